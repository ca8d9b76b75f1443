#include "dsm.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "signal_safe_log.h"

namespace dsm {

Dsm::~Dsm() { Close(); }

bool Dsm::Open(const Options& o, RegionError* err) {
  if (!region_.Map(o.base, o.size, o.pageShift, err)) return false;
  const uint32_t n = region_.numPages();
  if (!pt_.Allocate(n) || !prot_.Allocate(region_, &pt_, &stats_) || !txShadows_.Allocate(region_) ||
      !violShadows_.Allocate(region_) || !readSet_.Allocate(n) || !claimed_.Allocate(n) ||
      !backed_.Allocate(n) || !writtenLast_.Allocate(n) || !writeAhead_.Allocate(n) || !scratch_.Allocate(n)) {
    *err = {RegionError::kSystem, "allocating the page table and shadow areas failed"};
    region_.Unmap();
    return false;
  }
  stats_.Reset();
  if (!o.startInvalid) memset(pt_.states(), kValidUnmapped, n);
  return true;
}

void Dsm::Close() {
  CloseDataChannels();  // their readers write into the region
  ring_.FailAll();
  // No install may be copying into the region when it goes.
  Lock();
  closed_ = true;
  lock_.Unlock();
  while (installsInFlight_.load(std::memory_order_acquire) != 0) sched_yield();
  region_.Unmap();
}

bool Dsm::IsServiceThread() const {
  return hasService_.load(std::memory_order_acquire) && pthread_equal(pthread_self(), service_);
}

void Dsm::SetServiceThread(pthread_t t, bool attached) {
  service_ = t;
  hasService_.store(attached, std::memory_order_release);
}

void Dsm::Fatal(const char* what, uint32_t page, int err) {
  SignalSafeLog log;
  log.Put("node-dsm: fatal: ").Put(what).Put(" (page ").Num(page);
  if (err) log.Put(", ").Errno(err);
  log.Put(")\n").Flush();
  abort();
}

void Dsm::ResolveFault(uint32_t page, bool write) {
  if (!Lock()) Fatal("a fault on the DSM region interrupted the runtime's own page-table update", page, 0);
  bool waited = false;
  bool asked = false;  // the service was asked for this page once already
  for (;;) {
    const uint8_t s = pt_.state(page);
    const uint8_t m = pt_.model(page);
    if ((m & kModelMask) != kTransactional) {
      // A doomed run goes on until it returns, with pointers from data since replaced: into a
      // block another node allocated in the pages this run allocated too, say. Its touches
      // here must have no effect: taking a sequential or migratory page from its owner, its
      // writes would stay (an abort rolls back transactional pages only), and another node's
      // local page would fail the transaction instead of running it again. So it works on
      // scratch memory of its own until it ends; the page's state stays as it was.
      if (active_.load(std::memory_order_relaxed) && doomed_.load(std::memory_order_acquire)) {
        if (ScratchLocked(page)) {
          if (refuseRunFaults_.load(std::memory_order_acquire)) stats_.Inc(kRefusedFaults);
          break;
        }
        // Out of memory areas: the page is touched as any other.
      }
      // Not tracked (local, sequential): no read set, no shadow. A page here with the right
      // access is granted in the handler; a page not here, or a sequential write without
      // ownership, asks the service. Protections are set, not granted: Begin() leaves these
      // pages alone. The protection is set even when the state says it is granted already: a
      // whole-region revoke (mprotect ENOMEM) drops it without changing their states.
      const bool local = (m & kModelMask) == kLocal;
      // A migratory page is touched only where it lives: any access needs it owned here.
      const bool exclusive = (m & kModelMask) == kMigratory;
      // Another node's local page: every touch asks the service, which refuses it (a zero
      // page and a sticky error); once refused, this touch goes on over the zeros.
      const bool foreign = local && !(m & kHere);
      // Fenced (the lease ran out): sequential and migratory pages wait for the service.
      const bool may = foreign ? waited && s != kInvalid : s != kInvalid && (!(write || exclusive) || (m & kHere)) && (local || !fenced_.load(std::memory_order_acquire));
      if (!may) {
        lock_.Unlock();
        stats_.Inc(kServiceFaults);
        const uint32_t inRun = active_.load(std::memory_order_relaxed) ? uint32_t(kRequestInRun) : 0u;
        if (!ring_.PostAndWait(page, (write || exclusive ? uint32_t(kRequestWrite) : 0u) | inRun)) {
          Fatal("the page is not present on this node and the service thread is not running", page, 0);
        }
        if (!Lock()) Fatal("re-entered page-table lock", page, 0);
        waited = true;
        continue;
      }
      const bool rw = write || exclusive || (local && (m & kHere));
      const int prot = rw ? PROT_READ | PROT_WRITE : PROT_READ;
      // Granted (revoked at the next Begin()) for a foreign local page: the next
      // transaction's touch is refused again.
      if (!(foreign ? prot_.Grant(page, prot) : prot_.Set(page, prot))) Fatal("mprotect of the app view failed", page, errno);
      pt_.set_state(page, rw ? kWrite : kRead);
      // The lease alarm came in since the flag was read above (FenceOnAlarm, on this thread,
      // while it held the lock): this grant must not stand.
      if (!local && fenced_.load(std::memory_order_acquire)) {
        if (!prot_.Set(page, PROT_NONE)) Fatal("mprotect of the app view failed", page, errno);
        pt_.set_state(page, kValidUnmapped);
        continue;
      }
      stats_.Inc(write ? kWriteFaults : kReadFaults);
      break;
    }
    if (s == kInvalid) {
      const bool inRun = active_.load(std::memory_order_relaxed);
      if (inRun && doomed_.load(std::memory_order_acquire) && refuseRunFaults_.load(std::memory_order_acquire)) {
        // Nothing can be fetched for this run (RefuseRunFaults): it works on scratch memory
        // until it ends, and is not committed. The page stays invalid.
        if (ScratchLocked(page)) {
          stats_.Inc(kRefusedFaults);
          break;
        }
        // Out of memory areas: it waits, as any fault.
      }
      // A page another node holds, not the next of a scan: ask its owner now, over the data
      // channel, while the service wakes (fault_routes.h). Version 0 (never written: the
      // service makes it here) and the first fault after a wait (the answer did not make
      // the page valid: the service knows why) go through the service alone.
      const uint32_t owner = pt_.owner(page);
      const bool direct = !asked && pt_.version(page) != 0 && page != lastServiceFault_.load(std::memory_order_relaxed) + 1;
      lock_.Unlock();
      lastServiceFault_.store(page, std::memory_order_relaxed);
      stats_.Inc(kServiceFaults);
      const uint32_t reqId = direct ? routes_.Send(owner, page) : 0;
      if (reqId) stats_.Inc(kRequestsSentByFault);
      asked = true;
      // A data channel may install the reply before the slot is even taken (the owner's end
      // answers natively): the wait then sees the page valid and withdraws the slot.
      const RequestRing::Arrived arrived = [](const void* self, uint32_t p) {
        return static_cast<const Dsm*>(self)->pt_.state(p) != kInvalid;
      };
      bool early = false;
      if (!ring_.PostAndWait(page, (write ? uint32_t(kRequestWrite) : 0u) | (reqId ? uint32_t(kRequestSent) : 0u) | (inRun ? uint32_t(kRequestInRun) : 0u), reqId,
                             reqId ? arrived : nullptr, this, &early)) {
        Fatal("the page is not present on this node and the service thread is not running "
              "(was the node closed while a read was in progress?)",
              page, 0);
      }
      if (early) stats_.Inc(kFaultsAnsweredByChannel);
      if (!Lock()) Fatal("re-entered page-table lock", page, 0);
      continue;  // the service thread installed it (or something newer): look again
    }
    int prot;
    uint8_t next;
    if (!write) {
      if (s == kRead || s == kWrite) break;  // another thread granted it meanwhile
      const bool tx = active_.load(std::memory_order_relaxed);
      if (tx) readSet_.Add(page);
      // A page this transaction already wrote (re-protected by a revoke) needs no second fault.
      bool written = tx && txShadows_.Has(page);
      if (tx && !written && writtenLast_[page]) {
        // Most likely read to be written (see writtenLast_): shadowed now, one fault.
        txShadows_.Take(page);
        writeAhead_.Add(page);
        written = true;
        stats_.Inc(kWriteAhead);
      }
      prot = written ? PROT_READ | PROT_WRITE : PROT_READ;
      next = written ? kWrite : kRead;
      lastReadFault_.store(page, std::memory_order_relaxed);
      stats_.Inc(kReadFaults);
    } else {
      if (s == kWrite) break;
      if (active_.load(std::memory_order_relaxed)) {
        txShadows_.Take(page);
      } else {
        // Outside a transaction: keep the write possible (nothing crashes) but remember how
        // to undo it; the next DSM call rolls it back and throws.
        violShadows_.Take(page);
        violation_.store(true, std::memory_order_release);
        stats_.Inc(kViolations);
      }
      prot = PROT_READ | PROT_WRITE;
      next = kWrite;
      stats_.Inc(kWriteFaults);
    }
    if (!prot_.Grant(page, prot)) Fatal("mprotect of the app view failed", page, errno);
    pt_.set_state(page, next);
    break;
  }
  lock_.Unlock();
}

void Dsm::Begin() {
  Lock();
  // Revoke what the previous transaction (or reads outside one) were granted, so the first
  // touch of every page in this one is seen. Cost follows that footprint.
  if (!prot_.RevokeGranted()) Fatal("revoking page access failed", 0, errno);
  readSet_.Clear();
  txShadows_.Clear();
  writeAhead_.Clear();
  DropScratchLocked();
  {
    std::lock_guard<std::mutex> g(modelsMu_);
    declared_.clear();
    fresh_.clear();
  }
  doomed_.store(false, std::memory_order_release);
  doomCause_.store(kNoCause, std::memory_order_release);
  live_.store(true, std::memory_order_release);
  active_.store(true, std::memory_order_release);
  stats_.Inc(kBegins);
  lock_.Unlock();
}

uint32_t Dsm::End() {
  Lock();
  active_.store(false, std::memory_order_release);
  DropScratchLocked();
  // Written pages lose access: a write after the function returned is a violation, not part
  // of the transaction. To no access rather than read-only: the next Begin() then has
  // nothing to revoke for them (one mprotect per page and transaction instead of two; a
  // read before then faults once and is granted outside the transaction). Pages granted
  // write access ahead and left unchanged become what they are, read pages: read-only
  // until the next Begin(), like every page the function read (the heap guard reads the
  // page kinds where this node has them mapped).
  uint32_t count = 0;
  struct Runs {
    uint32_t page[Protections::kBatchRevoke];
    uint32_t k = 0;
  } none, read;
  // Once every granted page was revoked (mprotect ENOMEM), no page is made readable again:
  // it would be accessible without being remembered for the next revoke.
  bool revokedAll = false;
  auto flush = [&](Runs& r, int prot, uint8_t state) {
    if (revokedAll && prot != PROT_NONE) r.k = 0;
    if (r.k && !prot_.SetRuns(r.page, r.k, prot)) {
      if (errno != ENOMEM || !prot_.RevokeAll()) Fatal("mprotect of the app view failed", r.page[0], errno);
      revokedAll = true;
      r.k = 0;
      return;
    }
    for (uint32_t i = 0; i < r.k; i++) pt_.set_state(r.page[i], state);  // accessible when added (add)
    r.k = 0;
  };
  auto add = [&](Runs& r, uint32_t p, int prot, uint8_t state) {
    if (!IsAccessible(pt_.state(p))) return;
    r.page[r.k++] = p;
    if (r.k == Protections::kBatchRevoke) flush(r, prot, state);
  };
  txShadows_.pages().ForEach([&](uint32_t p) {
    // Granted write access ahead and left as it was: a read. (A remote commit that changed
    // the page meanwhile went into the shadow and doomed the run, so it compares unequal.)
    if (AheadUnchanged(p)) {
      txShadows_.Forget(p);
      writtenLast_[p] = 0;
      stats_.Inc(kWriteAheadUnused);
      add(read, p, PROT_READ, kRead);
    } else {
      count++;
      add(none, p, PROT_NONE, kValidUnmapped);
    }
  });
  writeAhead_.Clear();
  flush(none, PROT_NONE, kValidUnmapped);
  flush(read, PROT_READ, kRead);
  lock_.Unlock();
  return count;
}

bool Dsm::AheadUnchanged(uint32_t page) const {
  return writeAhead_.Contains(page) && memcmp(txShadows_.Slot(page), region_.SysPage(page), region_.pageSize()) == 0;
}

void Dsm::RestoreShadows(ShadowPages& s) {
  // Called with the lock held. Pages invalidated meanwhile were forgotten by Invalidate():
  // their newer version must not be overwritten with our stale shadow.
  s.pages().ForEach([&](uint32_t p) {
    if (pt_.state(p) == kInvalid) return;
    s.Restore(p);
    stats_.Inc(kShadowRestores);
  });
  // Restored pages must fault again on their next write; one revoke re-protects them all.
  if (!prot_.RevokeAll()) Fatal("revoking page access failed", 0, errno);
  s.Clear();
}

void Dsm::Abort() {
  Lock();
  active_.store(false, std::memory_order_release);
  // A write outside any transaction while this one's commit was pending shadowed the page
  // as it was then: this transaction's uncommitted data. Undoing that write must restore
  // the last committed contents, which are in this transaction's shadow (peers are served
  // the violation shadow too, see CopyCommittedPages).
  txShadows_.pages().ForEach([&](uint32_t p) {
    if (violShadows_.Has(p)) violShadows_.Replace(p, txShadows_.Slot(p));
  });
  RestoreShadows(txShadows_);
  readSet_.Clear();
  writeAhead_.Clear();
  DropScratchLocked();
  {
    // The run's allocations vanish with it, and so do their models.
    std::lock_guard<std::mutex> g(modelsMu_);
    declared_.clear();
    fresh_.clear();
  }
  live_.store(false, std::memory_order_release);
  doomed_.store(false, std::memory_order_release);
  stats_.Inc(kAborts);
  lock_.Unlock();
}

static std::vector<uint32_t> Sorted(const PageSet& s) {
  std::vector<uint32_t> v;
  v.reserve(s.count());
  s.ForEach([&](uint32_t p) { v.push_back(p); });
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

std::vector<uint32_t> Dsm::ReadSet() {
  Lock();
  auto v = Sorted(readSet_);
  lock_.Unlock();
  return v;
}

std::vector<uint32_t> Dsm::WriteSet() {
  Lock();
  auto v = Sorted(txShadows_.pages());
  // Inside the running function, pages granted write access ahead are written only once
  // they differ from their shadows (End() settles them for good).
  if (writeAhead_.count() != 0) v.erase(std::remove_if(v.begin(), v.end(), [&](uint32_t p) { return AheadUnchanged(p); }), v.end());
  lock_.Unlock();
  return v;
}

uint32_t Dsm::TakeViolations() {
  if (!violation_.load(std::memory_order_acquire)) return 0;
  Lock();
  uint32_t n = 0;
  violShadows_.pages().ForEach([&](uint32_t) { n++; });
  RestoreShadows(violShadows_);
  violation_.store(false, std::memory_order_release);
  lock_.Unlock();
  return n;
}

bool Dsm::Invalidate(uint32_t page, uint64_t version, uint16_t owner) {
  Lock();
  const bool doomed = InvalidateLocked(page, version, owner);
  lock_.Unlock();
  return doomed;
}

bool Dsm::InvalidatePages(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count) {
  Lock();
  bool doomed = false;
  for (uint32_t i = 0; i < count; i++) doomed = InvalidateLocked(pages[i], versions[i], owners[i]) || doomed;
  lock_.Unlock();
  return doomed;
}

bool Dsm::InvalidateLocked(uint32_t page, uint64_t version, uint16_t owner) {
  // A copy fetched from the committer can arrive before the commit that made it: it is
  // already that version, and whoever read it read the new data.
  if (pt_.state(page) != kInvalid && pt_.version(page) >= version && version != 0) return false;
  bool doomed = false;
  if (live_.load(std::memory_order_acquire) && (readSet_.Contains(page) || txShadows_.Has(page))) {
    DoomLocked(page, owner);
    doomed = true;
  }
  // The shadow holds a version older than the one that replaced it: never restore it.
  txShadows_.Forget(page);
  violShadows_.Forget(page);
  if (pt_.state(page) != kInvalid) {
    if (!prot_.Set(page, PROT_NONE)) Fatal("mprotect of the app view failed", page, errno);
    pt_.set_state(page, kInvalid);
  }
  pt_.set_version(page, version);
  pt_.set_owner(page, owner);
  stats_.Inc(kInvalidations);
  return doomed;
}

bool Dsm::ScratchLocked(uint32_t page) {
  // Mapped already (a later protection change took its access): writable again.
  const bool again = scratch_.Contains(page);
  if (!(again ? mprotect(region_.AppPage(page), region_.pageSize(), PROT_READ | PROT_WRITE) == 0 : region_.MapScratch(page))) return false;
  scratch_.Add(page);
  return true;
}

void Dsm::DropScratchLocked() {
  scratch_.ForEach([&](uint32_t p) {
    // Back to the page's own memory, with the access its state says it has (the service
    // set states meanwhile, never the scratch's protection). A transactional page (freed
    // meanwhile) is granted again by its next fault.
    int prot = PROT_NONE;
    const uint8_t s = pt_.state(p);
    if ((pt_.model(p) & kModelMask) != kTransactional) {
      if (s == kRead) prot = PROT_READ;
      if (s == kWrite) prot = PROT_READ | PROT_WRITE;
    } else if (IsAccessible(s)) {
      pt_.set_state(p, kValidUnmapped);
    }
    if (!region_.UnmapScratch(p, prot)) Fatal("mapping a page back under the app view failed", p, errno);
  });
  scratch_.Clear();
}

void Dsm::DoomLocked(uint32_t page, uint16_t node) {
  // The cause is published before the flag: whoever sees the transaction doomed finds it.
  if (!doomed_.load(std::memory_order_acquire)) doomCause_.store(uint64_t(page) << 16 | node, std::memory_order_release);
  doomed_.store(true, std::memory_order_release);
}

bool Dsm::DoomCause(uint32_t* page, uint16_t* node) const {
  const uint64_t c = doomCause_.load(std::memory_order_acquire);
  if (c == kNoCause) return false;
  *page = uint32_t(c >> 16);
  *node = uint16_t(c & 0xffff);
  return true;
}

uint32_t Dsm::RefuseRunFaults(bool on) {
  refuseRunFaults_.store(on, std::memory_order_release);
  if (!on) return 0;
  Lock();
  // Doomed before the waiting faults wake: each then sees the run doomed and refused.
  if (live_.load(std::memory_order_acquire)) doomed_.store(true, std::memory_order_release);
  lock_.Unlock();
  return ring_.CompleteFlagged(kRequestInRun);
}

void Dsm::MarkLost(uint32_t page) {
  Lock();
  if (live_.load(std::memory_order_acquire)) doomed_.store(true, std::memory_order_release);
  lost_.store(page, std::memory_order_release);
  lock_.Unlock();
}

}  // namespace dsm
