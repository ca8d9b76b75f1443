// A commit's changes: encoded at commit against the shadows the transaction kept (the
// record other members apply, and the whole page where a backup may lack the version it
// replaces), and another node's record applied here (update, or invalidate where this copy
// is not the version the change was made against).
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "dsm.h"
#include "page_diff.h"

namespace dsm {

void Dsm::Commit(uint64_t time, uint16_t owner, std::vector<uint32_t>* pages, std::vector<uint8_t>* changes) {
  Lock();
  active_.store(false, std::memory_order_release);
  if (pages && changes) {
    // Encoded before the versions are stamped: each change names the version it replaces.
    const size_t ps = region_.pageSize();
    txShadows_.pages().ForEach([&](uint32_t p) { pages->push_back(p); });
    std::sort(pages->begin(), pages->end());
    pages->erase(std::unique(pages->begin(), pages->end()), pages->end());
    changes->reserve(pages->size() * 64);
    std::vector<uint8_t> diff;
    for (uint32_t p : *pages) {
      const size_t at = changes->size();
      changes->resize(at + 12 + ps);
      const uint64_t prev = pt_.version(p);
      // The committed contents: a write outside any transaction while this commit was
      // pending sits on top of them, with them in its shadow (see Abort()).
      const uint8_t* after = violShadows_.Has(p) ? violShadows_.Slot(p) : region_.SysPage(p);
      bool backupsHold = backupCount_ == 0 || (backed_[p] == prev && prev != 0);
      for (uint32_t b = 0; b < backupCount_ && !backupsHold; b++) backupsHold = pt_.owner(p) == backups_[b];
      // Never-written pages are zeros everywhere.
      if (prev == 0) backupsHold = true;
      uint32_t len;
      size_t body;
      if (backupsHold) {
        len = uint32_t(EncodeDiff(txShadows_.Slot(p), after, ps, changes->data() + at + 12));
        body = len;
      } else {
        memcpy(changes->data() + at + 12, after, ps);
        len = uint32_t(ps);
        body = ps;
        // The other members hold the previous version as often as not (they took its diff):
        // the diff beside the whole page keeps their copies current. Invalidated instead,
        // a copy had to be fetched again, and a committer dying before its backups got the
        // commit left the page's new version nowhere: lost, with only one node failed.
        diff.resize(ps);
        const uint32_t dlen = uint32_t(EncodeDiff(txShadows_.Slot(p), after, ps, diff.data()));
        if (dlen < ps / 2) {
          changes->resize(at + 12 + ps + 4 + dlen);
          memcpy(changes->data() + at + 12 + ps, &dlen, 4);
          memcpy(changes->data() + at + 16 + ps, diff.data(), dlen);
          len = kWholeAndDiff;
          body = ps + 4 + dlen;
        }
      }
      if (backupCount_) backed_[p] = time;
      memcpy(changes->data() + at, &prev, 8);
      memcpy(changes->data() + at + 8, &len, 4);
      changes->resize(at + 12 + body);
    }
  }
  txShadows_.pages().ForEach([&](uint32_t p) {
    pt_.set_version(p, time);
    pt_.set_owner(p, owner);
    writtenLast_[p] = 1;
  });
  txShadows_.Clear();
  readSet_.Clear();
  {
    std::lock_guard<std::mutex> g(modelsMu_);
    for (ModelChange c : declared_) {
      SetModelLocked(c.first, c.count, c.model, owner, true);
      c.time = time;
      committedModels_.push_back(c);
    }
    declared_.clear();
  }
  live_.store(false, std::memory_order_release);
  stats_.Inc(kCommits);
  lock_.Unlock();
}

void Dsm::SetBackups(const uint16_t* ids, uint32_t count) {
  Lock();
  count = std::min(count, kMaxBackups);
  bool same = count == backupCount_;
  for (uint32_t i = 0; same && i < count; i++) same = backups_[i] == ids[i];
  if (!same) {
    std::copy(ids, ids + count, backups_);
    backupCount_ = count;
    // New backups hold nothing of ours yet. A large region: one pass over 8 bytes a page.
    std::fill(&backed_[0], &backed_[0] + region_.numPages(), uint64_t(0));
  }
  lock_.Unlock();
}

int Dsm::ApplyCommit(uint64_t time, uint16_t owner, const uint32_t* pages, uint32_t count, const uint8_t* changes,
                     size_t changesLen) {
  const size_t ps = region_.pageSize();
  const uint32_t n = region_.numPages();
  // Checked whole before anything changes: a malformed record is refused, never half applied.
  std::vector<size_t> at;
  if (changesLen) {
    at.reserve(count);
    size_t off = 0;
    for (uint32_t i = 0; i < count; i++) {
      if (pages[i] >= n || changesLen - off < 12) return -1;
      uint32_t len;
      memcpy(&len, changes + off + 8, 4);
      at.push_back(off);
      if (len == kNotCarried) {
        off += 12;
        continue;
      }
      if (changesLen - off - 12 < len || !ValidDiff(changes + off + 12, len, ps)) return -1;
      off += 12 + len;
    }
    if (off != changesLen) return -1;
  } else {
    for (uint32_t i = 0; i < count; i++)
      if (pages[i] >= n) return -1;
  }
  bool doomed = false;
  Lock();
  for (uint32_t i = 0; i < count; i++) {
    const uint32_t page = pages[i];
    uint64_t prev = 0;
    uint32_t len = 0;
    if (changesLen) {
      memcpy(&prev, changes + at[i], 8);
      memcpy(&len, changes + at[i] + 8, 4);
    }
    // A page allocated outside transactional consistency since (its model arrived ahead
    // of the commits before it): no transactional commit speaks for it any more.
    if ((pt_.model(page) & kModelMask) != kTransactional) continue;
    const uint8_t s = pt_.state(page);
    if (!changesLen || len == kNotCarried || s == kInvalid || pt_.version(page) != prev || time <= prev) {
      if (InvalidateLocked(page, time, owner)) doomed = true;
      continue;
    }
    const uint8_t* diff = changes + at[i] + 12;
    if (live_.load(std::memory_order_acquire) && (readSet_.Contains(page) || txShadows_.Has(page))) {
      DoomLocked(page, owner);
      doomed = true;
    }
    // The committed contents are in a shadow while the page carries uncommitted writes
    // (the doomed transaction's, or a write outside one waiting to be rolled back): the
    // change goes there, and the rollback brings the new version back.
    if (txShadows_.Has(page)) {
      ApplyDiff(txShadows_.Slot(page), ps, diff, len);
    } else if (violShadows_.Has(page)) {
      ApplyDiff(violShadows_.Slot(page), ps, diff, len);
    } else {
      // Readers take the page whole, old or new: access is revoked while it changes (a
      // reader faults and waits on the lock), and the next touch is recorded again.
      if (IsAccessible(s)) {
        if (!prot_.Set(page, PROT_NONE)) Fatal("mprotect of the app view failed", page, errno);
        pt_.set_state(page, kValidUnmapped);
      }
      ApplyDiff(region_.SysPage(page), ps, diff, len);
    }
    pt_.set_version(page, time);
    pt_.set_owner(page, owner);
    stats_.Inc(kUpdates);
  }
  lock_.Unlock();
  return doomed ? 1 : 0;
}

}  // namespace dsm
