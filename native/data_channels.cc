// The per-process instance's data channels (data_channel.h): opened on sockets the service
// hands over, the faulting threads' routes to them (fault_routes.h), frames the service
// writes on them, and what their readers finished. Channels are created and closed by the
// service thread; their readers run on threads of their own.
#include <string.h>

#include <vector>

#include "dsm.h"
#include "wire_bytes.h"

namespace dsm {

uint32_t Dsm::OpenDataChannel(int fd, const DataChannel::Config& c, DataChannel::Notifier fn, void* arg) {
  std::lock_guard<std::mutex> lock(channelsMu_);
  const uint32_t id = nextChannel_++;
  channels_.push_back(std::make_unique<DataChannel>(this, id, fd, c));
  channels_.back()->Start(fn, arg);
  return id;
}

void Dsm::CloseDataChannel(uint32_t id) {
  std::unique_ptr<DataChannel> gone;
  {
    std::lock_guard<std::mutex> lock(channelsMu_);
    for (auto it = channels_.begin(); it != channels_.end(); ++it) {
      if ((*it)->id() == id) {
        gone = std::move(*it);
        channels_.erase(it);
        break;
      }
    }
  }
  if (gone) routes_.Disable(gone.get());  // no faulting thread writes to it any more
  if (gone) gone->Stop();  // outside the lock: TakeDataDone may be waiting for it
}

bool Dsm::RouteFaults(uint32_t owner, uint32_t id, const FaultRoutes::Wire& w) {
  std::lock_guard<std::mutex> lock(channelsMu_);
  for (auto& c : channels_) {
    if (c->id() != id) continue;
    routes_.Configure(w);
    routes_.Enable(owner, c.get());
    return true;
  }
  return false;
}

bool Dsm::SendOnChannel(uint32_t id, uint8_t type, const uint8_t* payload, size_t len) {
  std::vector<uint8_t> f(kFrameHeader + len);
  std::lock_guard<std::mutex> lock(channelsMu_);
  for (auto& c : channels_) {
    if (c->id() != id) continue;
    const DataChannel::Config& w = c->config();
    PutFrameHeader(f.data(), len, w.protocolVersion, w.clusterId, type);
    if (len) memcpy(f.data() + kFrameHeader, payload, len);
    return c->SendFrame(f.data(), f.size());
  }
  return false;
}

void Dsm::TakeForwarded(uint32_t id, std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> lock(channelsMu_);
  for (auto& c : channels_) {
    if (c->id() == id) c->TakeForwarded(out);
  }
}

void Dsm::CloseDataChannels() {
  std::vector<std::unique_ptr<DataChannel>> all;
  {
    std::lock_guard<std::mutex> lock(channelsMu_);
    all.swap(channels_);
  }
  for (auto& c : all) routes_.Disable(c.get());
  for (auto& c : all) c->Stop();
}

void Dsm::TakeDataDone(std::vector<DataDone>* out) {
  std::lock_guard<std::mutex> lock(channelsMu_);
  for (auto& c : channels_) c->TakeDone(out);
}

}  // namespace dsm
