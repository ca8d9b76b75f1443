// A Dsm over a region of the test executable, with the fault handler attached: what the
// native test files share.
#pragma once
#include <cstdint>
#include <cstdio>

#include "../../native/dsm.h"
#include "../../native/fault_handler.h"

namespace dsm_test {

// Away from AddressSanitizer's allocator (0x600000000000) and shadow, as the default base.
constexpr uintptr_t kBase = 0x210000000000;

// Opens a Dsm at kBase and attaches the fault handler to it; null (and a line on stderr)
// when the region cannot be mapped.
inline dsm::Dsm* OpenDsm(size_t size) {
  auto* d = new dsm::Dsm();
  dsm::RegionError err;
  dsm::Options o;
  o.base = kBase;
  o.size = size;
  if (!d->Open(o, &err)) {
    std::fprintf(stderr, "open failed: %s\n", err.message.c_str());
    delete d;
    return nullptr;
  }
  dsm::fault_handler::Attach(d);
  return d;
}

inline void CloseDsm(dsm::Dsm* d) {
  dsm::fault_handler::Detach();
  delete d;
}

}  // namespace dsm_test
