// Copies of pages taken before their first write, so an aborted transaction (or a write
// outside any transaction) can be rolled back. One slot per region page, at the page's own
// offset in a MAP_NORESERVE area: taking a shadow never allocates, which the fault handler
// requires, and costs memory only for pages actually shadowed.
#pragma once
#include <cstdint>
#include <cstring>

#include "mapped_array.h"
#include "region.h"

namespace dsm {

class ShadowPages {
 public:
  bool Allocate(const Region& r) {
    region_ = &r;
    return area_.Allocate(r.size()) && pages_.Allocate(r.numPages());
  }
  // Signal-safe. Copies the page (system view) into its slot the first time it is written
  // since Clear(); returns true when it did.
  bool Take(uint32_t page) {
    if (pages_.Contains(page)) return false;
    memcpy(Slot(page), region_->SysPage(page), region_->pageSize());
    pages_.Add(page);
    return true;
  }
  bool Has(uint32_t page) const { return pages_.Contains(page); }
  // The shadow no longer describes the page (it was replaced by a newer version): skip it
  // on restore.
  void Forget(uint32_t page) { pages_.Forget(page); }
  void Restore(uint32_t page) { memcpy(region_->SysPage(page), Slot(page), region_->pageSize()); }
  // Replaces a shadow's contents (the page must be shadowed): the copy it took turned out
  // not to be the committed contents.
  void Replace(uint32_t page, const uint8_t* from) { memcpy(Slot(page), from, region_->pageSize()); }
  const uint8_t* Slot(uint32_t page) const { return area_.data() + (size_t(page) << region_->pageShift()); }
  uint8_t* Slot(uint32_t page) { return area_.data() + (size_t(page) << region_->pageShift()); }
  const PageSet& pages() const { return pages_; }
  void Clear() { pages_.Clear(); }

 private:
  const Region* region_ = nullptr;
  MappedArray<uint8_t> area_;
  PageSet pages_;
};

}  // namespace dsm
