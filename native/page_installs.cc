// How copies of pages reach the region from the service thread (page replies, hand-overs,
// a page server loading its store), and how committed copies leave it to be served. A page
// is claimed while invalid under the lock, written outside it (a faulting app thread never
// spins behind a large copy; a claimed page stays inaccessible and is served by nobody), and
// then published with its version and owner.
#include <errno.h>
#include <string.h>
#include <time.h>

#include <vector>

#include "dsm.h"
#include "wire_bytes.h"

namespace dsm {

bool Dsm::Install(uint32_t page, const uint8_t* data, uint64_t version, uint16_t owner) {
  return InstallPages(&page, &version, &owner, 1, data) == 1;
}

uint32_t Dsm::InstallPages(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count,
                           const uint8_t* data) {
  const size_t ps = region_.pageSize();
  std::vector<uint32_t> take;
  if (!ClaimInvalid(pages, versions, count, &take)) return 0;  // closed
  // Copy outside the lock, so a faulting app thread never spins behind a large copy. Safe:
  // a claimed page stays invalid (inaccessible in the app view, served by nobody) and no
  // other install takes it until this one publishes or releases it.
  for (size_t k = 0; k < take.size();) {
    size_t n = 1;
    while (k + n < take.size() && take[k + n] == take[k] + n && pages[take[k + n]] == pages[take[k]] + n) n++;
    if (data) {
      region_.WritePages(pages[take[k]], uint32_t(n), data + take[k] * ps);
    } else {
      for (size_t m = 0; m < n; m++) memset(region_.SysPage(pages[take[k + m]]), 0, ps);
    }
    k += n;
  }
  return Publish(pages, versions, owners, take);
}

int64_t Dsm::InstallPagesFrom(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count,
                              const std::function<bool(uint8_t* to, size_t len)>& read) {
  const size_t ps = region_.pageSize();
  std::vector<uint32_t> take;
  if (!ClaimInvalid(pages, versions, count, &take)) return -1;  // closed
  // The data arrives in page order: taken pages go straight into the region (safe as in
  // InstallPages), the others are read and dropped.
  std::vector<uint8_t> scratch;
  size_t k = 0;
  for (uint32_t i = 0; i < count;) {
    if (k < take.size() && take[k] == i) {
      // A run of taken, consecutive pages: one read into the region.
      uint32_t n = 1;
      while (k + n < take.size() && take[k + n] == i + n && pages[i + n] == pages[i] + n) n++;
      if (!read(region_.SysPage(pages[i]), size_t(n) * ps)) return Release(pages, take), -1;
      i += n;
      k += n;
    } else {
      scratch.resize(ps);
      if (!read(scratch.data(), ps)) return Release(pages, take), -1;
      i++;
    }
  }
  return Publish(pages, versions, owners, take);
}

bool Dsm::ClaimInvalid(const uint32_t* pages, const uint64_t* versions, uint32_t count, std::vector<uint32_t>* take) {
  // Which pages to take: invalid here, not older than what this node knows, and not being
  // installed by another install (a data channel's, say) right now.
  take->reserve(count);
  Lock();
  if (closed_) {
    lock_.Unlock();
    return false;
  }
  installsInFlight_.fetch_add(1, std::memory_order_acq_rel);
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t page = pages[i];
    if (pt_.state(page) == kInvalid && versions[i] >= pt_.version(page) && !claimed_[page] &&
        (pt_.model(page) & kModelMask) == kTransactional) {
      claimed_[page] = 1;
      take->push_back(i);
    }
  }
  lock_.Unlock();
  return true;
}

void Dsm::Release(const uint32_t* pages, const std::vector<uint32_t>& take) {
  Lock();
  for (uint32_t i : take) claimed_[pages[i]] = 0;
  lock_.Unlock();
  installsInFlight_.fetch_sub(1, std::memory_order_acq_rel);
}

uint32_t Dsm::Publish(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners,
                      const std::vector<uint32_t>& take) {
  std::vector<uint32_t> installed;
  installed.reserve(take.size());
  Lock();
  for (uint32_t i : take) {
    const uint32_t page = pages[i];
    claimed_[page] = 0;
    // A commit that arrived during the copy made this copy stale: leave the page invalid;
    // its next fault fetches anew.
    if (pt_.state(page) != kInvalid || versions[i] < pt_.version(page)) continue;
    pt_.set_version(page, versions[i]);
    pt_.set_owner(page, owners[i]);
    pt_.set_state(page, kValidUnmapped);
    stats_.Inc(kInstalls);
    installed.push_back(page);
  }
  const uint32_t done = uint32_t(installed.size());
  // Begin() revokes granted pages under this lock, so a grant made here is either seen by
  // the next transaction's revoke or not made at all. Tripwire pages stay unmapped (see
  // lastReadFault()).
  if (!live_.load(std::memory_order_acquire) && !installed.empty()) {
    std::sort(installed.begin(), installed.end());
    installed.erase(std::remove_if(installed.begin(), installed.end(),
                                   [](uint32_t p) { return p % kTripwireEvery == kTripwireEvery / 2; }),
                    installed.end());
    if (prot_.GrantRuns(installed.data(), uint32_t(installed.size()), PROT_READ)) {
      for (uint32_t p : installed) pt_.set_state(p, kRead);
    }
  }
  lock_.Unlock();
  installsInFlight_.fetch_sub(1, std::memory_order_acq_rel);
  return done;
}

uint32_t Dsm::AnswerFaults(const uint32_t* pages, uint32_t count) {
  uint32_t woken = 0;
  if (!Lock()) return 0;
  ring_.CompleteTaken(
      [&](uint32_t page) {
        if (page >= region_.numPages() || pt_.state(page) == kInvalid || (pt_.model(page) & kModelMask) != kTransactional) return false;
        for (uint32_t i = 0; i < count; i++)
          if (pages[i] == page) return true;
        return false;
      },
      [&](const uint32_t* tickets, uint32_t n) {
        lock_.Unlock();
        for (uint32_t i = 0; i < n; i++) ring_.Complete(tickets[i]);
        woken = n;
      });
  stats_.Inc(kFaultsAnsweredByChannel, woken);
  return woken;
}

void Dsm::CopyCommittedPages(const uint32_t* pages, uint32_t count, uint8_t* out) {
  // Under the lock: a page the app thread has not shadowed yet cannot be written meanwhile.
  Lock();
  CopyCommittedLocked(pages, count, out);
  lock_.Unlock();
}

void Dsm::CopyCommittedLocked(const uint32_t* pages, uint32_t count, uint8_t* out) {
  const size_t ps = region_.pageSize();
  for (uint32_t i = 0; i < count;) {
    const uint32_t page = pages[i];
    if (txShadows_.Has(page) || violShadows_.Has(page)) {
      memcpy(out + i * ps, txShadows_.Has(page) ? txShadows_.Slot(page) : violShadows_.Slot(page), ps);
      i++;
      continue;
    }
    uint32_t n = 1;
    while (i + n < count && pages[i + n] == page + n && !txShadows_.Has(page + n) && !violShadows_.Has(page + n)) n++;
    region_.ReadPages(page, n, out + i * ps);
    i += n;
  }
}

void Dsm::CopyCurrentPages(const uint32_t* pages, uint32_t count, uint8_t* out) {
  // Through the system view: the app view may have no access to them (End() took it from
  // the pages a run wrote), and a read there would fault once per page.
  const size_t ps = region_.pageSize();
  Lock();
  for (uint32_t i = 0; i < count;) {
    uint32_t n = 1;
    while (i + n < count && pages[i + n] == pages[i] + n) n++;
    region_.ReadPages(pages[i], n, out + i * ps);
    i += n;
  }
  lock_.Unlock();
}

int64_t Dsm::MonotonicMs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe (POSIX)
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

void Dsm::SetServingLease(int64_t msFromNow) {
  const int64_t ms = MonotonicMs();
  int64_t until = 0;
  if (msFromNow == INT64_MAX) until = INT64_MAX;
  else if (msFromNow > 0) until = ms + msFromNow;
  serveUntilMs_.store(until, std::memory_order_release);
}

uint32_t Dsm::ServeCommitted(uint16_t me, uint32_t first, uint32_t max, uint8_t* meta, uint8_t* data) {
  if (MonotonicMs() >= serveUntilMs_.load(std::memory_order_acquire)) return 0;
  const uint32_t numPages = region_.numPages();
  if (first >= numPages || max == 0) return 0;
  if (max > numPages - first) max = numPages - first;
  const uint64_t servable = servable_.load(std::memory_order_acquire);
  if (!Lock()) return 0;
  if (closed_) {
    lock_.Unlock();
    return 0;
  }
  uint32_t count = 0;
  uint32_t pages[kServeMax];
  if (max > kServeMax) max = kServeMax;
  while (count < max) {
    const uint32_t p = first + count;
    // The rules of the service's own answer (lib/service/page_serving.ts), narrowed: a
    // transactional page this node owns and holds, at a version whose commit has gone out
    // (a lent-token commit not yet broadcast is the service's to send first). Read-ahead
    // pages must have been written; anything else is the service's to decide.
    if (pt_.state(p) == kInvalid || pt_.owner(p) != me || (pt_.model(p) & kModelMask) != kTransactional) break;
    const uint64_t v = pt_.version(p);
    if (v > servable || (count > 0 && v == 0)) break;
    uint8_t* m = meta + size_t(count) * 14;
    StoreLE32(m, p);
    StoreLE64(m + 4, v);
    m[12] = uint8_t(me);
    m[13] = uint8_t(me >> 8);
    pages[count++] = p;
  }
  if (count) CopyCommittedLocked(pages, count, data);
  lock_.Unlock();
  if (count) stats_.Inc(kServedByChannel);
  return count;
}

void Dsm::CopyCommitted(uint32_t page, uint8_t* out) { CopyCommittedPages(&page, 1, out); }

}  // namespace dsm
