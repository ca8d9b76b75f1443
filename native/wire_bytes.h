// The transport's byte order (little-endian) and frame header, for native code that reads
// and writes frames itself (data channels, fault routes). The frame layout is defined with
// the protocol (lib/service/frame.ts): u32 length of what follows it | u8 protocol version
// | u32 cluster id | u8 message type | payload.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsm {

inline uint32_t LoadLE32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t LoadLE64(const uint8_t* p) { return uint64_t(LoadLE32(p)) | uint64_t(LoadLE32(p + 4)) << 32; }
inline void StoreLE32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
inline void StoreLE64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}

constexpr size_t kFrameHeader = 10;
// Writes a frame header for `payload` bytes of message `type` into h[0..10).
inline void PutFrameHeader(uint8_t* h, size_t payload, uint8_t protocolVersion, uint32_t clusterId, uint8_t type) {
  StoreLE32(h, uint32_t(6 + payload));
  h[4] = protocolVersion;
  StoreLE32(h + 5, clusterId);
  h[9] = type;
}

}  // namespace dsm
