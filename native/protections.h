// Page protections of the app view, and the pages granted access since the last revoke.
// Every run of pages with one protection is one kernel memory area; past vm.max_map_count
// areas mprotect fails with ENOMEM. A handler that ignored that would retry the same fault
// forever, so on ENOMEM this revokes every granted page in one call (one area again) and
// retries once: the revoked pages only cost a later local fault.
#pragma once
#include <sys/mman.h>

#include <cstdint>

#include "mapped_array.h"
#include "page_table.h"
#include "region.h"
#include "stats.h"

namespace dsm {

class Protections {
 public:
  // Revoking more pages than this one by one costs more than one whole-region mprotect.
  static constexpr uint32_t kBatchRevoke = 32;

  bool Allocate(const Region& r, PageTable* pt, Stats* st) {
    region_ = &r;
    pt_ = pt;
    stats_ = st;
    return granted_.Allocate(r.numPages());
  }
  // Signal-safe. Sets the app-view protection of one page. Returns false only when mprotect
  // fails for a reason a revoke cannot cure (errno says which).
  bool Set(uint32_t page, int prot);
  // Signal-safe. Makes `page` accessible with `prot` and remembers it for the next revoke.
  bool Grant(uint32_t page, int prot);
  // Revokes access to every page granted since the last revoke (kRead/kWrite become
  // kValidUnmapped). Cost follows the number of granted pages, not the region size.
  bool RevokeGranted();
  // Grants `prot` on sorted `pages` (one mprotect per run) and remembers them for the next
  // revoke. An optimisation, never needed for progress: false (nothing granted, states
  // unchanged) when the kernel refuses, e.g. with too many memory areas.
  bool GrantRuns(const uint32_t* pages, uint32_t count, int prot);
  // Revokes the whole region but the untracked ranges (one mprotect per gap between them).
  bool RevokeAll();
  // Pages of the consistency models outside transactions keep their protection across
  // revokes: their access is never recorded, and revoking it would cost every one of them a
  // local fault after each transaction that revokes the whole region. Blocks as allocated
  // (SetModel); past kMaxUntracked blocks the extra ones are revoked like any page (their
  // next touch faults and is granted again in the handler).
  void SetUntracked(uint32_t first, uint32_t count, bool untracked);
  static constexpr uint32_t kMaxUntracked = 1024;
  bool Untracked(uint32_t page) const;
  // Sets `prot` on `count` pages from `pages`, merging consecutive page numbers into one call.
  bool SetRuns(const uint32_t* pages, uint32_t count, int prot);
  uint32_t grantedCount() const { return granted_.count(); }

 private:
  const Region* region_ = nullptr;
  PageTable* pt_ = nullptr;
  Stats* stats_ = nullptr;
  PageSet granted_;
  struct Range {
    uint32_t first, end;
  };
  Range untracked_[kMaxUntracked];  // sorted, disjoint
  uint32_t untrackedCount_ = 0;
};

}  // namespace dsm
