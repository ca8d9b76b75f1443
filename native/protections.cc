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
  const unsigned shift = region_->pageShift();
  uint32_t from = 0;
  for (uint32_t i = 0; i <= untrackedCount_; i++) {
    const uint32_t to = i < untrackedCount_ ? untracked_[i].first : region_->numPages();
    if (to > from && mprotect(region_->AppPage(from), size_t(to - from) << shift, PROT_NONE) != 0) return false;
    if (i < untrackedCount_) from = untracked_[i].end;
  }
  bool ok = true;
  granted_.ForEach([&](uint32_t p) {
    if (!IsAccessible(pt_->state(p))) return;
    // A granted page inside an untracked range (another node's local page, touched; a page
    // granted before its model changed) was skipped above: revoked alone.
    if (Untracked(p) && mprotect(region_->AppPage(p), region_->pageSize(), PROT_NONE) != 0) ok = false;
    pt_->set_state(p, kValidUnmapped);
  });
  if (!ok) return false;
  granted_.Clear();
  stats_->Inc(kProtectionResets);
  return true;
}

bool Protections::Untracked(uint32_t page) const {
  uint32_t lo = 0, hi = untrackedCount_;
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (untracked_[mid].end <= page) lo = mid + 1;
    else hi = mid;
  }
  return lo < untrackedCount_ && untracked_[lo].first <= page;
}

void Protections::SetUntracked(uint32_t first, uint32_t count, bool untracked) {
  uint32_t i = 0;
  while (i < untrackedCount_ && untracked_[i].first < first) i++;
  const bool present = i < untrackedCount_ && untracked_[i].first == first;
  if (untracked && !present) {
    if (untrackedCount_ == kMaxUntracked) return;
    for (uint32_t k = untrackedCount_; k > i; k--) untracked_[k] = untracked_[k - 1];
    untracked_[i] = {first, first + count};
    untrackedCount_++;
  } else if (!untracked && present) {
    for (uint32_t k = i; k + 1 < untrackedCount_; k++) untracked_[k] = untracked_[k + 1];
    untrackedCount_--;
  }
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
  if (granted_.count() == 0) return true;
  // Pages revoked since they were granted (Dsm::End revokes written pages itself) need no
  // second mprotect.
  uint32_t pages[kBatchRevoke];
  uint32_t k = 0;
  bool many = false;
  granted_.ForEach([&](uint32_t p) {
    if (!IsAccessible(pt_->state(p))) return;
    if (k == kBatchRevoke) many = true;
    else pages[k++] = p;
  });
  if (many) return RevokeAll();
  if (!SetRuns(pages, k, PROT_NONE)) {
    if (errno != ENOMEM) return false;
    return RevokeAll();
  }
  for (uint32_t i = 0; i < k; i++) pt_->set_state(pages[i], kValidUnmapped);
  granted_.Clear();
  return true;
}

}  // namespace dsm
