// A page's change as carried by a commit: the runs of 32-bit words that differ between the
// page before the transaction (its shadow) and after, or the whole page when that is
// smaller. Receivers holding the previous version apply it instead of fetching the page.
//
// Layout of a diff (little-endian, as the machines that share a region are):
//   a whole page:  exactly pageSize bytes, the new contents
//   runs:          fewer than pageSize bytes, a sequence of
//                    u16 first word | u16 word count (>= 1) | count x 4 bytes
//                  runs in increasing order, not overlapping; empty: nothing changed
// A run is never as long as a page, so the length alone tells the two forms apart.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsm {

// Encodes the change from `before` to `after` (pageSize bytes each) into `out`, which has
// room for pageSize bytes. Returns the length written (pageSize: the whole page).
size_t EncodeDiff(const uint8_t* before, const uint8_t* after, size_t pageSize, uint8_t* out);

// True when `diff` is well formed for a page of `pageSize` bytes (checked before anything
// is applied: a diff from the network is never applied halfway).
bool ValidDiff(const uint8_t* diff, size_t len, size_t pageSize);

// Applies a diff that ValidDiff accepted.
void ApplyDiff(uint8_t* page, size_t pageSize, const uint8_t* diff, size_t len);

}  // namespace dsm
