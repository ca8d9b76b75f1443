#include "data_channel.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "dsm.h"
#include "wire_bytes.h"

namespace dsm {


DataChannel::DataChannel(Dsm* d, uint32_t id, int fd, const Config& c) : dsm_(d), id_(id), fd_(fd), cfg_(c) {}

void DataChannel::Start(Notifier fn, void* arg) {
  notifier_ = fn;
  notifierArg_ = arg;
  thread_ = std::thread([this] { Run(); });
}

void DataChannel::Stop() {
  stop_.store(true);
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);  // wakes a blocked read
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  std::lock_guard<std::mutex> lock(mu_);
  notifier_ = nullptr;
}

void DataChannel::TakeDone(std::vector<DataDone>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  out->insert(out->end(), done_.begin(), done_.end());
  done_.clear();
}

void DataChannel::TakeForwarded(std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  out->insert(out->end(), forwarded_.begin(), forwarded_.end());
  forwarded_.clear();
}

void DataChannel::Push(DataDone d) {
  // Notify under the lock: Stop() clears the notifier under it.
  std::lock_guard<std::mutex> lock(mu_);
  done_.push_back(d);
  if (notifier_) notifier_(notifierArg_);
}

void DataChannel::Fail(ChannelEnd why) {
  if (!stop_.load()) Push(DataDone{id_, kChannelClosed, why});
}

void DataChannel::SendHeartbeat() {
  // The peer closes a connection it hears nothing from, and a faulting thread's requests
  // may be rare. Skipped while a request is being written (that is traffic too).
  if (sending_.test_and_set(std::memory_order_acquire)) return;
  uint8_t h[kFrameHeader];
  PutFrameHeader(h, 0, cfg_.protocolVersion, cfg_.clusterId, cfg_.heartbeatType);
  (void)!send(fd_, h, sizeof h, MSG_NOSIGNAL | MSG_DONTWAIT);
  sending_.clear(std::memory_order_release);
}

bool DataChannel::SendFrame(const uint8_t* p, size_t n) {
  while (sending_.test_and_set(std::memory_order_acquire)) sched_yield();
  size_t off = 0;
  bool ok = true;
  while (off < n) {
    ssize_t w = send(fd_, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd q{fd_, POLLOUT, 0};
      if (poll(&q, 1, 100) > 0) continue;
    }
    ok = false;
    break;
  }
  // Half a frame is on the wire: nothing after it would parse. End the channel.
  if (!ok && off > 0) shutdown(fd_, SHUT_RDWR);
  sending_.clear(std::memory_order_release);
  return ok;
}

bool DataChannel::ReadExactly(uint8_t* to, size_t len) {
  size_t got = 0;
  while (got < len) {
    if (stop_.load()) return false;
    // The owner closes a connection it hears nothing from, also while it streams to us.
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t ms = int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
    if (ms - lastBeatMs_ >= int64_t(cfg_.heartbeatMs)) {
      SendHeartbeat();
      lastBeatMs_ = ms;
    }
    // Read what is there; wait only when nothing is.
    ssize_t n = recv(fd_, to + got, len - got, MSG_DONTWAIT);
    if (n > 0) {
      got += size_t(n);
      continue;
    }
    if (n == 0) {
      eof_ = true;  // closed by the peer
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, int(cfg_.heartbeatMs));
    if (r < 0 && errno != EINTR) return false;
  }
  return true;
}

bool DataChannel::NextFrame(uint8_t* type, uint32_t* body) {
  uint8_t h[kFrameHeader];
  if (!ReadExactly(h, sizeof h)) {
    Fail(ReadFailure());  // closed
    return false;
  }
  const uint32_t len = LoadLE32(h);
  if (len < 6 || len - 6 > cfg_.maxFrame || h[4] != cfg_.protocolVersion || LoadLE32(h + 5) != cfg_.clusterId) {
    Fail(kBadFrame);  // bad frame header
    return false;
  }
  *type = h[9];
  *body = len - 6;
  return true;
}

void DataChannel::Run() {
  if (cfg_.serve) {
    Serve();
    return;
  }
  const size_t ps = dsm_->region().pageSize();
  const uint32_t numPages = dsm_->region().numPages();
  std::vector<uint32_t> pages;
  std::vector<uint64_t> versions;
  std::vector<uint16_t> owners;
  std::vector<uint8_t> meta;
  for (;;) {
    uint8_t type;
    uint32_t body;
    if (!NextFrame(&type, &body)) return;
    if (type == cfg_.heartbeatType) {
      if (body != 0) {
        Fail(kBadFrame);  // heartbeat with a body
        return;
      }
      continue;
    }
    if (type != cfg_.replyType || body < 13) {
      Fail(kBadFrame);  // not a page reply
      return;
    }
    uint8_t r[13];
    if (!ReadExactly(r, sizeof r)) {
      Fail(ReadFailure());  // truncated
      return;
    }
    const uint32_t reqId = LoadLE32(r), n = LoadLE32(r + 9);
    if (n > 4096 || uint64_t(body) != 13 + uint64_t(n) * (14 + ps)) {
      Fail(kBadFrame);  // page reply of the wrong length
      return;
    }
    meta.resize(size_t(n) * 14);
    if (n && !ReadExactly(meta.data(), meta.size())) {
      Fail(ReadFailure());  // truncated
      return;
    }
    pages.resize(n);
    versions.resize(n);
    owners.resize(n);
    uint64_t newest = 0;
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t* m = meta.data() + size_t(i) * 14;
      pages[i] = LoadLE32(m);
      versions[i] = LoadLE64(m + 4);
      owners[i] = uint16_t(m[12] | m[13] << 8);
      if (pages[i] >= numPages) {
        Fail(kBadFrame);  // page outside the region
        return;
      }
      if (versions[i] > newest) newest = versions[i];
    }
    if (n && dsm_->InstallPagesFrom(pages.data(), versions.data(), owners.data(), n,
                                    [this](uint8_t* to, size_t l) { return ReadExactly(to, l); }) < 0) {
      Fail(ReadFailure());  // truncated
      return;
    }
    // The faulting threads go on now; the service hears of the reply after them.
    if (n) dsm_->AnswerFaults(pages.data(), n);
    Push(DataDone{id_, reqId, newest});
  }
}

bool DataChannel::SendAll(iovec* iov, int count) {
  while (sending_.test_and_set(std::memory_order_acquire)) sched_yield();
  bool ok = true;
  while (count > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = size_t(count);
    ssize_t w = sendmsg(fd_, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && !stop_.load()) {
        pollfd q{fd_, POLLOUT, 0};
        poll(&q, 1, int(cfg_.heartbeatMs));
        continue;
      }
      ok = false;
      break;
    }
    size_t done = size_t(w);
    while (count > 0 && done >= iov->iov_len) {
      done -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + done;
      iov->iov_len -= done;
    }
  }
  sending_.clear(std::memory_order_release);
  return ok;
}

void DataChannel::Serve() {
  const size_t ps = dsm_->region().pageSize();
  const uint32_t maxPages = Dsm::kServeMax;
  std::vector<uint8_t> meta(size_t(maxPages) * 14);
  std::vector<uint8_t> data(size_t(maxPages) * ps);
  for (;;) {
    uint8_t type;
    uint32_t body;
    if (!NextFrame(&type, &body)) return;
    if (type == cfg_.heartbeatType && body == 0) continue;
    // A PageRequest (lib/service/protocol.ts; see fault_routes.cc for its layout).
    if (type != cfg_.requestType || body != 22) {
      Fail(kBadFrame);  // not a page request
      return;
    }
    uint8_t r[22];
    if (!ReadExactly(r, sizeof r)) {
      Fail(ReadFailure());  // truncated
      return;
    }
    const uint32_t reqId = LoadLE32(r), page = LoadLE32(r + 4);
    const uint32_t count = uint32_t(r[8] | r[9] << 8);
    const uint16_t requester = uint16_t(r[10] | r[11] << 8);
    const uint8_t hops = r[20], flags = r[21];
    uint32_t n = 0;
    // Relayed, searching, or naming another requester: the service's to judge.
    if (hops == 0 && !(flags & 1) && requester == cfg_.member && count > 0) {
      n = dsm_->ServeCommitted(cfg_.me, page, count < maxPages ? count : maxPages, meta.data(), data.data());
    }
    if (n == 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        forwarded_.insert(forwarded_.end(), r, r + sizeof r);
      }
      Push(DataDone{id_, kRequestsForwarded, 0});
      continue;
    }
    // The transport's frame around a PageReply: u32 request id | u32 page | u8 status (0:
    // ok) | u32 count | count x (u32 page | u64 version | u16 owner) | count pages.
    const size_t payload = 13 + size_t(n) * (14 + ps);
    uint8_t head[kFrameHeader + 13];
    PutFrameHeader(head, payload, cfg_.protocolVersion, cfg_.clusterId, cfg_.replyType);
    StoreLE32(head + 10, reqId);
    StoreLE32(head + 14, page);
    head[18] = 0;
    StoreLE32(head + 19, n);
    iovec iov[3] = {{head, sizeof head}, {meta.data(), size_t(n) * 14}, {data.data(), size_t(n) * ps}};
    if (!SendAll(iov, 3)) {
      Fail(kConnectionLost);
      return;
    }
  }
}

}  // namespace dsm
