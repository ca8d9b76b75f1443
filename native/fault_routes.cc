#include "fault_routes.h"

#include <sched.h>

#include "data_channel.h"
#include "wire_bytes.h"

namespace dsm {

void FaultRoutes::Configure(const Wire& w) {
  wire_ = w;
  configured_.store(true, std::memory_order_release);
}

void FaultRoutes::Enable(uint32_t owner, DataChannel* ch) {
  if (owner < kMaxOwners && configured_.load(std::memory_order_acquire)) routes_[owner].store(ch, std::memory_order_seq_cst);
}

void FaultRoutes::Disable(DataChannel* ch) {
  for (uint32_t i = 0; i < kMaxOwners; i++) {
    if (routes_[i].load(std::memory_order_seq_cst) != ch) continue;
    DataChannel* expected = ch;
    routes_[i].compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst);
  }
  // A sender counted itself before it loaded its route: once the count is seen at zero
  // after the routes were cleared, no send through `ch` is under way or can start.
  while (sending_.load(std::memory_order_seq_cst) != 0) sched_yield();
}

uint32_t FaultRoutes::Send(uint32_t owner, uint32_t page) {
  if (owner >= kMaxOwners || scanning_.load(std::memory_order_relaxed)) return 0;
  sending_.fetch_add(1, std::memory_order_seq_cst);
  DataChannel* ch = routes_[owner].load(std::memory_order_seq_cst);
  uint32_t id = 0;
  if (ch) {
    id = RequestId(nextId_.fetch_add(1, std::memory_order_relaxed));
    // The transport's frame (u32 length | u8 protocol version | u32 cluster id | u8 type)
    // around a PageRequest (lib/service/protocol.ts): u32 request id | u32 page | u16 count
    // | u16 requester | u64 the requester's applied time (unused by the owner) | u8 hops |
    // u8 flags (2: answer on the requester's data channel).
    uint8_t f[kFrameHeader + 22] = {};
    const DataChannel::Config& c = ch->config();
    PutFrameHeader(f, 22, c.protocolVersion, c.clusterId, wire_.requestType);
    uint8_t* b = f + kFrameHeader;
    StoreLE32(b, id);
    StoreLE32(b + 4, page);
    b[8] = 1;  // count
    b[10] = uint8_t(wire_.requester);
    b[11] = uint8_t(wire_.requester >> 8);
    b[21] = 2;  // viaData
    if (!ch->SendFrame(f, sizeof f)) id = 0;
  }
  sending_.fetch_sub(1, std::memory_order_seq_cst);
  return id;
}

}  // namespace dsm
