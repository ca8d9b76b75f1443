#include "protections.h"

#include <errno.h>

namespace dsm {

bool Protections::Set(uint32_t page, int prot) {
  if (mprotect(region_->AppPage(page), region_->pageSize(), prot) == 0) return true;
  if (errno != ENOMEM) return false;
  if (!RevokeAll()) return false;
  return prot == PROT_NONE || mprotect(region_->AppPage(page), region_->pageSize(), prot) == 0;
}

bool Protections::Grant(uint32_t page, int prot) {
  granted_.Add(page);
  if (mprotect(region_->AppPage(page), region_->pageSize(), prot) == 0) return true;
  if (errno != ENOMEM) return false;
  // Too many memory areas. Revoke everything (one area) and grant this page alone: the
  // retry cannot fail for the same reason, so the handler never spins.
  if (!RevokeAll()) return false;
  granted_.Add(page);
  return mprotect(region_->AppPage(page), region_->pageSize(), prot) == 0;
}

bool Protections::RevokeAll() {
  if (mprotect(region_->app(), region_->size(), PROT_NONE) != 0) return false;
  granted_.ForEach([&](uint32_t p) {
    if (IsAccessible(pt_->state(p))) pt_->set_state(p, kValidUnmapped);
  });
  granted_.Clear();
  stats_->Inc(kProtectionResets);
  return true;
}

bool Protections::SetRuns(const uint32_t* pages, uint32_t count, int prot) {
  uint32_t i = 0;
  while (i < count) {
    uint32_t first = pages[i], n = 1;
    while (i + n < count && pages[i + n] == first + n) n++;
    if (mprotect(region_->AppPage(first), size_t(n) << region_->pageShift(), prot) != 0) return false;
    i += n;
  }
  return true;
}

bool Protections::GrantRuns(const uint32_t* pages, uint32_t count, int prot) {
  // Remember first: a partial failure leaves some runs accessible, and the next revoke
  // must find them.
  for (uint32_t i = 0; i < count; i++) granted_.Add(pages[i]);
  if (SetRuns(pages, count, prot)) return true;
  // Undo whatever part succeeded, so page states and protections agree again.
  SetRuns(pages, count, PROT_NONE);
  return false;
}

bool Protections::RevokeGranted() {
  const uint32_t n = granted_.count();
  if (n == 0) return true;
  if (n > kBatchRevoke) {
    return RevokeAll();
  }
  uint32_t pages[kBatchRevoke];
  uint32_t k = 0;
  granted_.ForEach([&](uint32_t p) { pages[k++] = p; });
  if (!SetRuns(pages, k, PROT_NONE)) {
    if (errno != ENOMEM) return false;
    return RevokeAll();
  }
  for (uint32_t i = 0; i < k; i++) {
    if (IsAccessible(pt_->state(pages[i]))) pt_->set_state(pages[i], kValidUnmapped);
  }
  granted_.Clear();
  return true;
}

}  // namespace dsm
