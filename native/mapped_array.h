// A fixed-size array in its own anonymous MAP_NORESERVE mapping: sized for the whole
// region up front (so the fault handler never allocates), costing memory only where used.
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace dsm {

template <typename T>
class MappedArray {
 public:
  MappedArray() = default;
  ~MappedArray() { Release(); }
  MappedArray(const MappedArray&) = delete;
  MappedArray& operator=(const MappedArray&) = delete;

  bool Allocate(size_t count) {
    Release();
    if (count == 0) return true;
    void* p = mmap(nullptr, count * sizeof(T), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    data_ = static_cast<T*>(p);
    count_ = count;
    return true;
  }
  void Release() {
    if (data_) munmap(data_, count_ * sizeof(T));
    data_ = nullptr;
    count_ = 0;
  }
  // Gives the memory back to the kernel; contents read as zero afterwards.
  void Zero() {
    if (data_) madvise(data_, count_ * sizeof(T), MADV_DONTNEED);
  }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

// A list of page numbers with O(1) "already in it?" through per-page stamps: clearing is
// one increment, so a transaction's cost follows its footprint, not the region's size.
class PageSet {
 public:
  bool Allocate(uint32_t pages) {
    gen_ = 1;
    count_ = 0;
    return list_.Allocate(pages) && stamp_.Allocate(pages);
  }
  bool Contains(uint32_t page) const {
    return __atomic_load_n(&stamp_[page], __ATOMIC_ACQUIRE) == gen_;
  }
  // Returns true when the page was not in the set yet.
  bool Add(uint32_t page) {
    if (Contains(page)) return false;
    if (count_ == list_.size()) Compact();
    __atomic_store_n(&stamp_[page], gen_, __ATOMIC_RELEASE);
    list_[count_++] = page;
    return true;
  }
  // Forgets one page without shrinking the list; readers re-check Contains().
  void Forget(uint32_t page) { __atomic_store_n(&stamp_[page], 0u, __ATOMIC_RELEASE); }
  // Drops forgotten pages and the duplicates Forget() followed by Add() leaves behind.
  // Called only when the list is full, so at most once per region-sized batch of adds.
  void Compact() {
    const uint32_t mark = gen_ + 0x80000000u;  // a stamp no live generation uses soon
    uint32_t out = 0;
    for (uint32_t i = 0; i < count_; i++) {
      uint32_t p = list_[i];
      if (stamp_[p] != gen_) continue;
      stamp_[p] = mark;
      list_[out++] = p;
    }
    for (uint32_t i = 0; i < out; i++) stamp_[list_[i]] = gen_;
    count_ = out;
  }
  void Clear() {
    count_ = 0;
    if (++gen_ == 0) {  // wrapped after 2^32 clears: old stamps could alias
      stamp_.Zero();
      gen_ = 1;
    }
  }
  uint32_t count() const { return count_; }
  uint32_t at(uint32_t i) const { return list_[i]; }
  template <typename F>
  void ForEach(F f) const {
    for (uint32_t i = 0; i < count_; i++) {
      uint32_t p = list_[i];
      if (Contains(p)) f(p);
    }
  }

 private:
  MappedArray<uint32_t> list_;
  MappedArray<uint32_t> stamp_;
  uint32_t gen_ = 1;
  uint32_t count_ = 0;
};

}  // namespace dsm
