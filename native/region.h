// The shared region: one memfd mapped twice.
//   app view    - at a fixed base (the same on every node), protections = page states;
//   system view - always read-write, used only by the runtime (install, shadow, serve).
// The runtime never touches the app view, so it never faults on itself.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsm {

struct RegionError {
  // Stable codes, mirrored as ERR_DSM_* by the TypeScript layer.
  enum Code { kNone, kBaseInUse, kInvalidOption, kSystem } code = kNone;
  std::string message;
};

class Region {
 public:
  Region() = default;
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // Maps `size` bytes at `base`. `pageShift` is log2 of the DSM page size, which must be
  // the OS page size times a power of two. Returns false and fills `err` on failure.
  bool Map(uintptr_t base, size_t size, unsigned pageShift, RegionError* err);
  void Unmap();

  bool mapped() const { return app_ != nullptr; }
  uint8_t* app() const { return app_; }
  uint8_t* sys() const { return sys_; }
  size_t size() const { return size_; }
  size_t pageSize() const { return size_t(1) << pageShift_; }
  unsigned pageShift() const { return pageShift_; }
  uint32_t numPages() const { return uint32_t(size_ >> pageShift_); }
  bool Contains(const void* p) const {
    return uintptr_t(p) - uintptr_t(app_) < size_;  // unsigned wrap covers p < app_
  }
  uint32_t PageOf(const void* p) const { return uint32_t((uintptr_t(p) - uintptr_t(app_)) >> pageShift_); }
  uint8_t* AppPage(uint32_t page) const { return app_ + (size_t(page) << pageShift_); }
  uint8_t* SysPage(uint32_t page) const { return sys_ + (size_t(page) << pageShift_); }
  // Copy `count` pages from `page` on into / out of the region through the memfd, not
  // the system view: the kernel copies to and from its page cache directly, with no page
  // table entries to fault in (fetched pages are mostly fresh memory here).
  void WritePages(uint32_t page, uint32_t count, const uint8_t* data) const;
  void ReadPages(uint32_t page, uint32_t count, uint8_t* out) const;
  // Signal-safe. Puts private zero memory, read-write, under one page of the app view; the
  // memfd page itself is left alone.
  bool MapScratch(uint32_t page) const;
  // Maps the memfd page back under the app view with `prot`.
  bool UnmapScratch(uint32_t page, int prot) const;

  static size_t OsPageSize();

 private:
  int fd_ = -1;
  uint8_t* app_ = nullptr;
  uint8_t* sys_ = nullptr;
  size_t size_ = 0;
  unsigned pageShift_ = 12;
};

}  // namespace dsm
