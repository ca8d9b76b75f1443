// Pages outside transactional consistency (DESIGN.md "Consistency models"): their model
// byte, set when the allocating commit is made here or arrives, and the sequential and
// local protocols' page transitions. The policy (who owns a page, whom to invalidate)
// lives in the service (lib/service/sequential.ts); this only changes page state.
#include <errno.h>
#include <string.h>

#include <algorithm>

#include "dsm.h"

namespace dsm {

void Dsm::DeclareModel(uint32_t first, uint32_t count, uint8_t model) {
  std::lock_guard<std::mutex> g(modelsMu_);
  declared_.push_back({0, first, count, model});
}

bool Dsm::DeclareLost(uint32_t page, uint8_t model, uint16_t lostOwner) {
  // Under the page-table lock, as SetModel: another node's model change for the page comes
  // before (the owner differs: not declared) or after (it dooms the transaction), never
  // between the look at the owner and the declaration.
  Lock();
  const bool lost = pt_.owner(page) == lostOwner;
  if (lost) {
    std::lock_guard<std::mutex> g(modelsMu_);
    declared_.push_back({0, page, 1, model});
    // The zero page a touch of the lost page made here, perhaps written since: this node's
    // alone, so zeroed here, through the system view (no fault). Written through the app
    // view, a model change arriving first would make that write fetch the new owner's page
    // and zero it.
    if (pt_.state(page) != kInvalid) memset(region_.SysPage(page), 0, region_.pageSize());
  }
  lock_.Unlock();
  return lost;
}

void Dsm::TakeModelChanges(uint64_t time, std::vector<ModelChange>* out) {
  std::lock_guard<std::mutex> g(modelsMu_);
  size_t k = 0;
  while (k < committedModels_.size() && committedModels_[k].time <= time) out->push_back(committedModels_[k++]);
  committedModels_.erase(committedModels_.begin(), committedModels_.begin() + k);
}

bool Dsm::ClaimFresh(uint32_t first, uint32_t count) {
  const uint32_t n = region_.numPages();
  if (first >= n || count > n - first) return false;
  Lock();
  // Under the page-table lock, as SetModel: a model change for these pages comes before
  // (seen here) or after (it finds them in fresh_), never between.
  if (live_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> g(modelsMu_);
    fresh_.push_back({first, count});
    // A block this run freed is still of its model here until the run commits.
    const auto freedHere = [&](uint32_t p) {
      for (const ModelChange& c : declared_)
        if (c.model == kTransactional && c.first <= p && p < c.first + c.count) return true;
      return false;
    };
    for (uint32_t p = first; p < first + count; p++) {
      if ((pt_.model(p) & kModelMask) != kTransactional && !freedHere(p)) {
        DoomLocked(p, pt_.owner(p));
        break;
      }
    }
  }
  const bool doomed = doomed_.load(std::memory_order_acquire);
  lock_.Unlock();
  return doomed;
}

bool Dsm::SetModel(uint32_t first, uint32_t count, uint8_t model, uint16_t owner) {
  const uint32_t n = region_.numPages();
  if (first >= n || count > n - first) return false;
  bool doomed = false;
  Lock();
  if (live_.load(std::memory_order_acquire)) {
    // The running transaction declared a model for some of these pages too: it took a lost
    // page for still lost (tx.discardLost) while another node's discard made it new (the
    // heap page it then wrote can come newer than that discard's model change: fetched from
    // the discarder, without a conflict). Its commit would make this node a second owner and
    // drop the other's page with the writes made since, so it runs again and sees the page
    // is no longer lost. Or it allocated them, reading the heap before the other node's
    // allocation of them arrived, or touched them as the transactional pages they were: it
    // is doomed by that allocation's commit too, but that may come later (behind a gap),
    // and until then its touches would reach the other node's block (see ResolveFault).
    std::lock_guard<std::mutex> g(modelsMu_);
    const auto overlaps = [&](uint32_t f, uint32_t c) { return f < first + count && first < f + c; };
    for (const ModelChange& c : declared_) {
      if (overlaps(c.first, c.count)) {
        DoomLocked(std::max(c.first, first), owner);
        doomed = true;
      }
    }
    for (const auto& [f, c] : fresh_) {
      if (overlaps(f, c)) {
        DoomLocked(std::max(f, first), owner);
        doomed = true;
      }
    }
    for (uint32_t p = first; p < first + count && !doomed; p++) {
      if (readSet_.Contains(p) || txShadows_.Has(p)) {
        DoomLocked(p, owner);
        doomed = true;
      }
    }
  }
  SetModelLocked(first, count, model, owner, false);
  lock_.Unlock();
  return doomed;
}

void Dsm::SetModelLocked(uint32_t first, uint32_t count, uint8_t model, uint16_t owner, bool mine) {
  const size_t ps = region_.pageSize();
  prot_.SetUntracked(first, count, model != kTransactional);
  for (uint32_t p = first; p < first + count; p++) {
    txShadows_.Forget(p);
    violShadows_.Forget(p);
    if (model == kTransactional) {
      // Freed: free memory is zero on every node (the heap's invariant), so every node holds
      // the current contents, at the version its transactional history left the page.
      if (pt_.state(p) != kInvalid) {
        if (!prot_.Set(p, PROT_NONE)) Fatal("mprotect of the app view failed", p, errno);
      }
      memset(region_.SysPage(p), 0, ps);
      pt_.set_state(p, kValidUnmapped);
      pt_.set_model(p, kTransactional);
      continue;
    }
    if (mine) {
      // Allocated here: the block is zero (free memory is), so a copy that is not here is
      // made, not fetched.
      if (pt_.state(p) == kInvalid) {
        memset(region_.SysPage(p), 0, ps);
        pt_.set_state(p, kValidUnmapped);
      }
      pt_.set_model(p, uint8_t(model | kHere));
    } else {
      // Another node's: the first touch asks its owner (or is refused, for a local page).
      if (pt_.state(p) != kInvalid) {
        if (!prot_.Set(p, PROT_NONE)) Fatal("mprotect of the app view failed", p, errno);
        pt_.set_state(p, kInvalid);
      }
      pt_.set_model(p, model);
    }
    pt_.set_owner(p, owner);
  }
}

bool Dsm::ShareSequential(uint32_t page, uint8_t* out, bool drop, uint16_t newOwner) {
  Lock();
  const uint8_t s = pt_.state(page);
  const uint8_t model = pt_.model(page) & kModelMask;
  if ((model != kSequential && model != kMigratory) || s == kInvalid) {
    lock_.Unlock();
    return false;
  }
  // Write access goes before the copy is taken: a write after this faults and waits for
  // the service, so the copy sent is the page's latest contents.
  if (drop) {
    if (!prot_.Set(page, PROT_NONE)) Fatal("mprotect of the app view failed", page, errno);
    pt_.set_state(page, kInvalid);
    pt_.set_owner(page, newOwner);
    stats_.Inc(kInvalidations);
  } else if (s == kWrite) {
    if (!prot_.Set(page, PROT_READ)) Fatal("mprotect of the app view failed", page, errno);
    pt_.set_state(page, kRead);
  }
  pt_.set_model(page, model);
  memcpy(out, region_.SysPage(page), region_.pageSize());
  lock_.Unlock();
  return true;
}

void Dsm::InstallSequential(uint32_t page, const uint8_t* data, bool own, uint16_t owner) {
  Lock();
  // A copy held here is current (nobody writes while another node holds a copy), so it
  // needs no data; one that is not here is filled while the page is inaccessible.
  if (pt_.state(page) == kInvalid) {
    if (data) memcpy(region_.SysPage(page), data, region_.pageSize());
    else memset(region_.SysPage(page), 0, region_.pageSize());
    pt_.set_state(page, kValidUnmapped);
    stats_.Inc(kInstalls);
  }
  pt_.set_model(page, uint8_t((pt_.model(page) & kModelMask) | (own ? kHere : 0)));
  pt_.set_owner(page, owner);
  lock_.Unlock();
}

void Dsm::DropSequential(uint32_t page, uint16_t newOwner) {
  Lock();
  if (pt_.state(page) != kInvalid) {
    if (!prot_.Set(page, PROT_NONE)) Fatal("mprotect of the app view failed", page, errno);
    pt_.set_state(page, kInvalid);
    stats_.Inc(kInvalidations);
  }
  pt_.set_model(page, pt_.model(page) & kModelMask);
  pt_.set_owner(page, newOwner);
  lock_.Unlock();
}

void Dsm::OwnSequential(uint32_t page) {
  Lock();
  pt_.set_model(page, uint8_t(pt_.model(page) | kHere));
  lock_.Unlock();
}

uint32_t Dsm::Fence(bool on) {
  Lock();
  // Under the page-table lock: a fault that looked at the flag before this either granted
  // its access first (taken away here) or waits for the lock and sees the flag.
  fenced_.store(on, std::memory_order_release);
  // Pages the lease alarm fenced first count as fenced here: the service says how many wait.
  uint32_t fenced = fencedByAlarm_.exchange(0, std::memory_order_acq_rel);
  if (on) fenced += FenceLocked();
  lock_.Unlock();
  return fenced;
}

uint32_t Dsm::FenceLocked() {
  uint32_t fenced = 0;
  for (uint32_t p = 0; p < region_.numPages(); p++) {
    const uint8_t model = pt_.model(p) & kModelMask;
    const uint8_t s = pt_.state(p);
    if ((model != kSequential && model != kMigratory) || s == kInvalid || s == kValidUnmapped) continue;
    // The copy stays (valid, unmapped): the lease may come back with this node still a
    // member and still the owner, and then nothing has changed.
    if (!prot_.Set(p, PROT_NONE)) Fatal("mprotect of the app view failed", p, errno);
    pt_.set_state(p, kValidUnmapped);
    fenced++;
  }
  return fenced;
}

void Dsm::FenceOnAlarm() {
  // A renewal since the timer was set: the signal is stale.
  if (MonotonicMs() < serveUntilMs_.load(std::memory_order_acquire)) return;
  fenced_.store(true, std::memory_order_release);
  // This thread may hold the lock itself (the signal came in the middle of a fault or a
  // Begin): then no other thread can be changing page states either, and the section the
  // signal interrupted checks the flag again before it grants a page (ResolveFault).
  const bool took = lock_.Lock();
  fencedByAlarm_.fetch_add(FenceLocked(), std::memory_order_acq_rel);
  stats_.Inc(kLeaseAlarms);
  if (took) lock_.Unlock();
}

void Dsm::RefuseLocal(uint32_t page) {
  Lock();
  if (pt_.state(page) == kInvalid) {
    memset(region_.SysPage(page), 0, region_.pageSize());
    pt_.set_state(page, kValidUnmapped);
  }
  if (live_.load(std::memory_order_acquire)) doomed_.store(true, std::memory_order_release);
  localTouched_.store(page, std::memory_order_release);
  lock_.Unlock();
}

}  // namespace dsm
