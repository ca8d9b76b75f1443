// Page requests sent by the faulting thread itself. A single remote fault used to wait for
// the service thread to wake, take the request from the ring and send it; now, when the page's
// owner has a data channel (data_channel.h) and the page is a plain transactional one, the
// fault handler writes the PageRequest onto that channel before it posts the ring slot, so
// the request travels while the service thread wakes. The service still takes the slot (it
// carries the request id) and keeps the fetch's books: retries, a reply that comes over the
// main connection instead, a lost owner. The channel's reader installs the reply and wakes
// the thread (Dsm::AnswerFaults), also when the service has not taken the slot yet.
//
// Signal-safe on the sending side: atomics, a spin lock per channel, send(2) and poll(2).
// A route is disabled before its channel is stopped, and Disable waits until no faulting
// thread is still sending through it, so a send never reaches a closed (or reused) fd.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

namespace dsm {

class DataChannel;

class FaultRoutes {
 public:
  // Every 16-bit node id can have a route: ids are never given twice, so a long-lived
  // cluster's members have large ones (with 256 routes, members past id 255 were fetched
  // from through both service threads, 2.5x slower).
  static constexpr uint32_t kMaxOwners = 65536;
  // Request ids the faulting thread takes: the service's stay below (lib/service/pager.ts).
  static constexpr uint32_t kFirstRequestId = 0x80000000u;
  // The faulting thread's n-th request id: from kFirstRequestId up, wrapping before the two
  // highest, which a finished request's report would read as kRequestsForwarded and
  // kChannelClosed (data_channel.h) once 2^31 requests had been made.
  static constexpr uint32_t RequestId(uint32_t n) { return kFirstRequestId + n % (0xfffffffeu - kFirstRequestId); }
  // What a request carries beyond the channel's own frame fields (its Config).
  struct Wire {
    uint8_t requestType;  // the PageRequest message type
    uint16_t requester;   // this node's id
  };

  // Service thread. Routes work once configured (and until a route is disabled).
  void Configure(const Wire& w);
  void Enable(uint32_t owner, DataChannel* ch);
  // Disables every route through `ch` and waits for sends through it still under way.
  void Disable(DataChannel* ch);

  // Faulting thread (signal handler): sends a one-page request for `page` to `owner`;
  // returns the request id, or 0 when there is no route, a scan is on, or the send failed.
  uint32_t Send(uint32_t owner, uint32_t page);
  // Service thread: while a scan is on, its faults go to the service, whose read-ahead
  // asks for many pages at a time (lib/service/pager.ts).
  void SetScanning(bool on) { scanning_.store(on, std::memory_order_relaxed); }

 private:
  // Allocated whole (512 KiB), all null, before any fault can read it.
  std::unique_ptr<std::atomic<DataChannel*>[]> routes_{new std::atomic<DataChannel*>[kMaxOwners]()};
  std::atomic<uint32_t> sending_{0};
  std::atomic<uint32_t> nextId_{0};
  std::atomic<bool> configured_{false};
  std::atomic<bool> scanning_{false};
  Wire wire_{};
};

}  // namespace dsm
