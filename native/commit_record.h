// A commit's record in the commit ring (lib/service/commit_ring.ts), where the app thread
// leaves the commits it makes with the lent token for the service thread to broadcast.
// Written here, straight from the commit's encoding, rather than returned to JavaScript as
// arrays and copied in word by word. Words (native u32, as a Uint32Array sees them): time
// low, time high, page count, the pages, the changes' length in bytes, then the changes
// packed four bytes to a word, little-endian, the last word padded with zeros.
#pragma once
#include <cstddef>
#include <cstdint>

#include "wire_bytes.h"

namespace dsm {

inline size_t CommitRecordWords(size_t pages, size_t changeBytes) { return 4 + pages + (changeBytes + 3) / 4; }

// Writes the record at word `w` of `ring` (a power-of-two number of words; `mask` is that
// number minus one), wrapping round its end; returns the word after it (mod 2^32, as the
// ring's counters run).
inline uint32_t PutCommitRecord(uint32_t* ring, uint32_t mask, uint32_t w, uint64_t time, const uint32_t* pages,
                                size_t count, const uint8_t* changes, size_t len) {
  auto put = [&](uint32_t v) { ring[w++ & mask] = v; };
  put(uint32_t(time));
  put(uint32_t(time >> 32));
  put(uint32_t(count));
  for (size_t i = 0; i < count; i++) put(pages[i]);
  put(uint32_t(len));
  size_t i = 0;
  for (; i + 4 <= len; i += 4) put(LoadLE32(changes + i));
  if (i < len) {
    uint32_t last = 0;
    for (size_t k = 0; i + k < len; k++) last |= uint32_t(changes[i + k]) << (8 * k);
    put(last);
  }
  return w;
}

}  // namespace dsm
