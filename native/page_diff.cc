#include "page_diff.h"

#include <cstring>

namespace dsm {
namespace {

constexpr size_t kRunHeader = 4;
// Unchanged words between two changed runs that are cheaper to send than a new header.
constexpr size_t kMergeGap = 1;

inline uint32_t Word(const uint8_t* p, size_t w) {
  uint32_t v;
  memcpy(&v, p + w * 4, 4);
  return v;
}
inline uint16_t U16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

}  // namespace

size_t EncodeDiff(const uint8_t* before, const uint8_t* after, size_t pageSize, uint8_t* out) {
  const size_t words = pageSize / 4;
  size_t len = 0;
  size_t w = 0;
  while (w < words) {
    // Skip equal words 8 bytes at a time where possible.
    while (w + 2 <= words && memcmp(before + w * 4, after + w * 4, 8) == 0) w += 2;
    while (w < words && Word(before, w) == Word(after, w)) w++;
    if (w == words) break;
    const size_t first = w;
    size_t last = w;  // last changed word of this run
    for (size_t k = w + 1; k < words; k++) {
      if (Word(before, k) != Word(after, k)) {
        last = k;
      } else if (k - last > kMergeGap) {
        break;
      }
    }
    const size_t count = last - first + 1;
    if (len + kRunHeader + count * 4 >= pageSize) {
      memcpy(out, after, pageSize);
      return pageSize;
    }
    const uint16_t hdr[2] = {uint16_t(first), uint16_t(count)};
    memcpy(out + len, hdr, kRunHeader);
    memcpy(out + len + kRunHeader, after + first * 4, count * 4);
    len += kRunHeader + count * 4;
    w = last + 1;
  }
  return len;
}

bool ValidDiff(const uint8_t* diff, size_t len, size_t pageSize) {
  if (len == pageSize) return true;
  if (len > pageSize) return false;
  const size_t words = pageSize / 4;
  size_t at = 0;
  size_t next = 0;  // the first word a run may start at
  while (at < len) {
    if (len - at < kRunHeader) return false;
    const size_t first = U16(diff + at), count = U16(diff + at + 2);
    if (count == 0 || first < next || first + count > words) return false;
    if (len - at - kRunHeader < count * 4) return false;
    at += kRunHeader + count * 4;
    next = first + count;
  }
  return true;
}

void ApplyDiff(uint8_t* page, size_t pageSize, const uint8_t* diff, size_t len) {
  if (len == pageSize) {
    memcpy(page, diff, pageSize);
    return;
  }
  size_t at = 0;
  while (at < len) {
    const size_t first = U16(diff + at), count = U16(diff + at + 2);
    memcpy(page + first * 4, diff + at + kRunHeader, count * 4);
    at += kRunHeader + count * 4;
  }
}

}  // namespace dsm
