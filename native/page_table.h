// Per-page state, version and owner hint. Plain arrays in native memory so the fault
// handler reads them without locks and TypeScript reads them through external buffers.
#pragma once
#include <cstdint>

#include "mapped_array.h"

namespace dsm {

enum PageState : uint8_t {
  kInvalid = 0,        // PROT_NONE, no valid local copy: resolving needs the service thread
  kValidUnmapped = 1,  // PROT_NONE, valid copy; access revoked so the next touch is recorded
  kRead = 2,           // PROT_READ
  kWrite = 3,          // PROT_READ|PROT_WRITE
};

inline bool IsAccessible(uint8_t s) { return s == kRead || s == kWrite; }

// A page's consistency model (DESIGN.md "Consistency models"), chosen per allocation. The
// low bits of the model byte; kHere marks, for a sequential or migratory page, that this
// node owns it and no other node holds a copy (writes need no message), and for a local
// page, that this node is the one it belongs to.
enum PageModel : uint8_t {
  kTransactional = 0,
  kLocal = 1,
  kSequential = 2,
  // Single reader / single writer page migration: any access needs the page here, owned
  // (kHere), and moves it; the owner holds no copy it has given away.
  kMigratory = 3,
  kModelMask = 0x7f,
  kHere = 0x80,
};

class PageTable {
 public:
  bool Allocate(uint32_t pages) {
    return state_.Allocate(pages) && version_.Allocate(pages) && owner_.Allocate(pages) && model_.Allocate(pages);
  }
  uint8_t state(uint32_t p) const { return __atomic_load_n(&state_[p], __ATOMIC_ACQUIRE); }
  void set_state(uint32_t p, uint8_t s) { __atomic_store_n(&state_[p], s, __ATOMIC_RELEASE); }
  uint64_t version(uint32_t p) const { return __atomic_load_n(&version_[p], __ATOMIC_ACQUIRE); }
  void set_version(uint32_t p, uint64_t v) { __atomic_store_n(&version_[p], v, __ATOMIC_RELEASE); }
  uint16_t owner(uint32_t p) const { return __atomic_load_n(&owner_[p], __ATOMIC_ACQUIRE); }
  void set_owner(uint32_t p, uint16_t o) { __atomic_store_n(&owner_[p], o, __ATOMIC_RELEASE); }

  uint8_t model(uint32_t p) const { return __atomic_load_n(&model_[p], __ATOMIC_ACQUIRE); }
  void set_model(uint32_t p, uint8_t m) { __atomic_store_n(&model_[p], m, __ATOMIC_RELEASE); }

  uint8_t* states() const { return state_.data(); }
  uint64_t* versions() const { return version_.data(); }
  uint16_t* owners() const { return owner_.data(); }
  uint8_t* models() const { return model_.data(); }
  uint32_t size() const { return uint32_t(state_.size()); }

 private:
  MappedArray<uint8_t> state_;
  MappedArray<uint64_t> version_;
  MappedArray<uint16_t> owner_;
  MappedArray<uint8_t> model_;
};

}  // namespace dsm
