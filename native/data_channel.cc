#include "data_channel.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "dsm.h"

namespace dsm {

static uint32_t U32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
static uint64_t U64(const uint8_t* p) { return uint64_t(U32(p)) | uint64_t(U32(p + 4)) << 32; }

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
  uint8_t h[10] = {6, 0, 0, 0, cfg_.protocolVersion, 0, 0, 0, 0, cfg_.heartbeatType};
  for (int i = 0; i < 4; i++) h[5 + i] = uint8_t(cfg_.clusterId >> (8 * i));
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

void DataChannel::Run() {
  const size_t ps = dsm_->region().pageSize();
  const uint32_t numPages = dsm_->region().numPages();
  std::vector<uint32_t> pages;
  std::vector<uint64_t> versions;
  std::vector<uint16_t> owners;
  std::vector<uint8_t> meta;
  for (;;) {
    uint8_t h[10];
    if (!ReadExactly(h, sizeof h)) {
      Fail(ReadFailure());  // closed
      return;
    }
    const uint32_t len = U32(h);
    if (len < 6 || len - 6 > cfg_.maxFrame || h[4] != cfg_.protocolVersion || U32(h + 5) != cfg_.clusterId) {
      Fail(kBadFrame);  // bad frame header
      return;
    }
    const uint32_t body = len - 6;
    if (h[9] == cfg_.heartbeatType) {
      if (body != 0) {
        Fail(kBadFrame);  // heartbeat with a body
        return;
      }
      continue;
    }
    if (h[9] != cfg_.replyType || body < 13) {
      Fail(kBadFrame);  // not a page reply
      return;
    }
    uint8_t r[13];
    if (!ReadExactly(r, sizeof r)) {
      Fail(ReadFailure());  // truncated
      return;
    }
    const uint32_t reqId = U32(r), n = U32(r + 9);
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
      pages[i] = U32(m);
      versions[i] = U64(m + 4);
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

}  // namespace dsm
