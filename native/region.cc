#include "region.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

namespace dsm {

static std::string Hex(uintptr_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
  return buf;
}

size_t Region::OsPageSize() { return size_t(sysconf(_SC_PAGESIZE)); }

Region::~Region() { Unmap(); }

bool Region::Map(uintptr_t base, size_t size, unsigned pageShift, RegionError* err) {
  const size_t os = OsPageSize();
  if ((size_t(1) << pageShift) < os || pageShift > 24) {
    *err = {RegionError::kInvalidOption, "pageSize must be the OS page size (" +
                                             std::to_string(os) + ") times a power of two, at most 16 MiB"};
    return false;
  }
  const size_t page = size_t(1) << pageShift;
  if (size == 0 || size % page != 0) {
    *err = {RegionError::kInvalidOption, "regionSize must be a positive multiple of the page size (" +
                                             std::to_string(page) + ")"};
    return false;
  }
  if (base == 0 || base % page != 0) {
    *err = {RegionError::kInvalidOption, "base must be a non-zero address aligned to the page size"};
    return false;
  }
  fd_ = memfd_create("node-dsm", MFD_CLOEXEC);
  if (fd_ < 0) {
    *err = {RegionError::kSystem, std::string("memfd_create failed: ") + strerror(errno)};
    return false;
  }
  // Sized once: a memfd page beyond the file's size would raise SIGBUS, not SIGSEGV.
  if (ftruncate(fd_, off_t(size)) != 0) {
    *err = {RegionError::kSystem, std::string("ftruncate of the region failed: ") + strerror(errno)};
    close(fd_);
    fd_ = -1;
    return false;
  }
  // MAP_FIXED would silently replace whatever lives at `base`; NOREPLACE fails instead.
  void* app = mmap(reinterpret_cast<void*>(base), size, PROT_NONE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, fd_, 0);
  if (app == MAP_FAILED || uintptr_t(app) != base) {
    int e = errno;
    if (app != MAP_FAILED) munmap(app, size);  // kernels before 4.17 treat the flag as a hint
    close(fd_);
    fd_ = -1;
    if (app != MAP_FAILED || e == EEXIST) {
      *err = {RegionError::kBaseInUse, "the address range " + Hex(base) + "-" + Hex(base + size) +
                                           " is already in use in this process; pick another base "
                                           "(the same on every node) or a smaller regionSize"};
    } else {
      *err = {RegionError::kSystem, "mapping the app view at " + Hex(base) + " failed: " + strerror(e)};
    }
    return false;
  }
  void* sys = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd_, 0);
  if (sys == MAP_FAILED) {
    int e = errno;
    munmap(app, size);
    close(fd_);
    fd_ = -1;
    *err = {RegionError::kSystem, std::string("mapping the system view failed: ") + strerror(e)};
    return false;
  }
  app_ = static_cast<uint8_t*>(app);
  sys_ = static_cast<uint8_t*>(sys);
  size_ = size;
  pageShift_ = pageShift;
  return true;
}

void Region::Unmap() {
  if (app_) munmap(app_, size_);
  if (sys_) munmap(sys_, size_);
  if (fd_ >= 0) close(fd_);
  app_ = sys_ = nullptr;
  fd_ = -1;
  size_ = 0;
}

// Repeats `op(done)` (a pread or pwrite of the rest) until `len` bytes are done or it
// fails; returns how many were.
template <typename Op>
static size_t Repeat(size_t len, Op op) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = op(done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  return done;
}

bool Region::MapScratch(uint32_t page) const {
  return mmap(AppPage(page), pageSize(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
              0) != MAP_FAILED;
}

bool Region::UnmapScratch(uint32_t page, int prot) const {
  return mmap(AppPage(page), pageSize(), prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd_, off_t(size_t(page) << pageShift_)) !=
         MAP_FAILED;
}

void Region::WritePages(uint32_t page, uint32_t count, const uint8_t* data) const {
  const size_t len = size_t(count) << pageShift_;
  const off_t at = off_t(size_t(page) << pageShift_);
  size_t done = Repeat(len, [&](size_t d) { return pwrite(fd_, data + d, len - d, at + off_t(d)); });
  // A failed write (it should not happen on a memfd) falls back to the mapping.
  if (done < len) memcpy(SysPage(page) + done, data + done, len - done);
}

void Region::ReadPages(uint32_t page, uint32_t count, uint8_t* out) const {
  const size_t len = size_t(count) << pageShift_;
  const off_t at = off_t(size_t(page) << pageShift_);
  size_t done = Repeat(len, [&](size_t d) { return pread(fd_, out + d, len - d, at + off_t(d)); });
  if (done < len) memcpy(out + done, SysPage(page) + done, len - done);
}

}  // namespace dsm
