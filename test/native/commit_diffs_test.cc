// Native tests of commits that carry their changes: page diffs round-trip, a commit
// updates current copies and invalidates stale ones, whole pages go to backups that may
// lack the previous version, a doomed transaction's rollback keeps an update, and commit
// records go into the commit ring whole.
#include <cstring>
#include <random>
#include <vector>

#include "../../native/commit_record.h"
#include "../../native/dsm.h"
#include "../../native/page_diff.h"
#include "check.h"
#include "dsm_fixture.h"

using namespace dsm;
using namespace dsm_test;

// Diffs round-trip over random edits, including none and whole-page changes; malformed
// diffs are refused before anything is applied.
TEST(page_diffs_round_trip_and_refuse_malformed_input) {
  const size_t ps = 4096;
  std::mt19937 rng(20261126);
  std::vector<uint8_t> before(ps), after(ps), out(ps), page(ps);
  for (int round = 0; round < 2000; round++) {
    for (auto& b : before) b = uint8_t(rng());
    after = before;
    const int edits = round % 50 == 0 ? 0 : int(rng() % 12);
    for (int e = 0; e < edits; e++) {
      const size_t at = rng() % ps, n = 1 + rng() % (round % 7 == 0 ? ps : 64);
      for (size_t k = at; k < std::min(ps, at + n); k++) after[k] = uint8_t(rng());
    }
    if (round % 97 == 0) for (auto& b : after) b = uint8_t(rng());  // the whole page
    const size_t len = EncodeDiff(before.data(), after.data(), ps, out.data());
    CHECK(len <= ps);
    if (edits == 0 && round % 97 != 0) CHECK(len == 0);
    CHECK(ValidDiff(out.data(), len, ps));
    page = before;
    ApplyDiff(page.data(), ps, out.data(), len);
    CHECK(page == after);
  }
  // One word changed: one run of one word.
  after = before;
  after[100] ^= 1;
  CHECK(EncodeDiff(before.data(), after.data(), ps, out.data()) == 8);
  const uint8_t truncated[] = {1, 0, 2, 0, 9, 9, 9, 9};  // two words promised, one sent
  CHECK(!ValidDiff(truncated, sizeof truncated, ps));
  const uint8_t empty_run[] = {1, 0, 0, 0};
  CHECK(!ValidDiff(empty_run, sizeof empty_run, ps));
  const uint8_t past_end[] = {0xff, 0x03, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1};  // words 1023..1024
  CHECK(!ValidDiff(past_end, sizeof past_end, ps));
  const uint8_t overlap[] = {4, 0, 1, 0, 1, 1, 1, 1, 4, 0, 1, 0, 2, 2, 2, 2};
  CHECK(!ValidDiff(overlap, sizeof overlap, ps));
  CHECK(!ValidDiff(out.data(), ps + 1, ps));
}

static std::vector<uint8_t> Change(uint64_t prev, const std::vector<uint8_t>& before, const std::vector<uint8_t>& after) {
  std::vector<uint8_t> c(12 + before.size());
  const uint32_t len = uint32_t(EncodeDiff(before.data(), after.data(), before.size(), c.data() + 12));
  memcpy(c.data(), &prev, 8);
  memcpy(c.data() + 8, &len, 4);
  c.resize(12 + len);
  return c;
}

TEST(commits_carry_diffs_that_update_current_copies_and_invalidate_stale_ones) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  const uint32_t page = 5;
  d->Begin();
  app[page * 4096 + 8] = 0x5a;
  d->End();
  std::vector<uint32_t> pages;
  std::vector<uint8_t> changes;
  d->Commit(12, 1, &pages, &changes);
  CHECK(pages == std::vector<uint32_t>{page});
  CHECK(changes.size() == 12 + 8);  // version 0 replaced, one run of one word
  uint64_t prev;
  memcpy(&prev, changes.data(), 8);
  CHECK(prev == 0);
  // Node 2 commits time 13 over version 12: our copy is current, so it is updated in place.
  std::vector<uint8_t> v12(4096), v13;
  d->CopyCommitted(page, v12.data());
  v13 = v12;
  v13[100] = 0x77;
  auto c13 = Change(12, v12, v13);
  CHECK(d->ApplyCommit(13, 2, &page, 1, c13.data(), c13.size()) == 0);
  CHECK(d->pages().state(page) != kInvalid && d->pages().version(page) == 13 && d->pages().owner(page) == 2);
  CHECK(app[page * 4096 + 100] == 0x77 && app[page * 4096 + 8] == 0x5a);
  CHECK(d->stats().Get(kUpdates) == 1);
  // A change over a version we do not hold (12 again, at 14): invalidated instead.
  CHECK(d->ApplyCommit(14, 2, &page, 1, c13.data(), c13.size()) == 0);
  CHECK(d->pages().state(page) == kInvalid && d->pages().version(page) == 14);
  // A change left out (sent to backups only): the current copy of page 6 is invalidated.
  std::vector<uint8_t> out(12);
  const uint64_t zero = 0;
  const uint32_t notCarried = Dsm::kNotCarried;
  memcpy(out.data(), &zero, 8);
  memcpy(out.data() + 8, &notCarried, 4);
  const uint32_t six = 6;
  CHECK(d->ApplyCommit(15, 2, &six, 1, out.data(), out.size()) == 0);
  CHECK(d->pages().state(6) == kInvalid && d->pages().version(6) == 15);
  // Malformed changes are refused whole: page 9 stays as it was.
  const uint32_t two[] = {9, 10};
  CHECK(d->ApplyCommit(16, 2, two, 2, c13.data(), c13.size()) == -1);
  CHECK(d->pages().state(9) != kInvalid && d->pages().version(9) == 0);
  CloseDsm(d);
}

// A backup gets a diff only against a version it holds: one it made itself, or one it got
// from our previous commit of the page since the backups last changed; else the whole page.
TEST(commits_send_whole_pages_to_backups_that_may_lack_the_previous_version) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  const uint16_t backup = 3;
  auto commit = [&](uint32_t page, uint64_t time) {
    d->Begin();
    app[page * 4096 + time] = uint8_t(time);
    d->End();
    std::vector<uint32_t> pages;
    std::vector<uint8_t> changes;
    d->Commit(time, 1, &pages, &changes);
    uint32_t len;
    memcpy(&len, changes.data() + 8, 4);
    return len;
  };
  // No backups: always a diff.
  const uint32_t p21 = 21;
  {
    std::vector<uint8_t> z(4096, 0), v(4096, 0);
    v[9] = 1;
    auto c = Change(0, z, v);
    CHECK(d->ApplyCommit(1, 5, &p21, 1, c.data(), c.size()) == 0);
  }
  CHECK(commit(21, 2) == 8);
  d->SetBackups(&backup, 1);
  CHECK(commit(20, 1) == 8);     // never written: zeros everywhere, a diff
  CHECK(commit(20, 2) == 8);     // the backup got version 1 from us
  // Another node (not a backup) commits the page: the backup may not hold that version.
  std::vector<uint8_t> v2(4096), v3;
  d->CopyCommitted(20, v2.data());
  v3 = v2;
  v3[500] = 1;
  auto c3 = Change(2, v2, v3);
  const uint32_t p20 = 20;
  CHECK(d->ApplyCommit(3, 5, &p20, 1, c3.data(), c3.size()) == 0);
  // Whole for the backup, with the diff beside it for everyone else.
  {
    d->Begin();
    app[20 * 4096 + 4] = 4;
    d->End();
    std::vector<uint32_t> pages;
    std::vector<uint8_t> changes;
    d->Commit(4, 1, &pages, &changes);
    uint32_t len, dlen;
    memcpy(&len, changes.data() + 8, 4);
    CHECK(len == Dsm::kWholeAndDiff);
    CHECK(changes.size() >= 16 + 4096);
    memcpy(&dlen, changes.data() + 12 + 4096, 4);
    CHECK(dlen == 8 && changes.size() == 16 + 4096 + dlen);
    CHECK(changes[12 + 4] == 4 && changes[12 + 500] == 1);  // the whole page, as committed
    // The diff takes a copy at version 3 to version 4, as the whole page does.
    std::vector<uint8_t> at3 = v3, at4 = v3;
    at4[4] = 4;
    CHECK(ValidDiff(changes.data() + 16 + 4096, dlen, 4096));
    ApplyDiff(at3.data(), 4096, changes.data() + 16 + 4096, dlen);
    CHECK(at3 == at4);
    // Never accepted from the network: refused whole, nothing applied.
    CHECK(d->ApplyCommit(9, 5, &p20, 1, changes.data(), changes.size()) == -1);
    CHECK(d->pages().version(20) == 4);
  }
  CHECK(commit(20, 5) == 8);     // and a diff again
  // The backup itself commits it: it holds what it made.
  v3[500] = 2;
  std::vector<uint8_t> v5(4096);
  d->CopyCommitted(20, v5.data());
  std::vector<uint8_t> v6 = v5;
  v6[600] = 9;
  auto c6 = Change(5, v5, v6);
  CHECK(d->ApplyCommit(6, backup, &p20, 1, c6.data(), c6.size()) == 0);
  CHECK(commit(20, 7) == 8);
  // New backups hold nothing of ours.
  const uint16_t other = 4;
  d->SetBackups(&other, 1);
  CHECK(commit(20, 8) == Dsm::kWholeAndDiff);
  CloseDsm(d);
}

// A commit that changes a page the running transaction wrote dooms it, and the rollback
// brings back the new version: neither the doomed writes nor the old contents survive.
TEST(an_update_to_a_page_the_live_transaction_wrote_survives_its_rollback) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  const uint32_t page = 7;
  std::vector<uint8_t> v0(4096, 0), v1(4096, 0);
  v1[40] = 0x99;
  auto c1 = Change(0, v0, v1);
  d->Begin();
  app[page * 4096 + 40] = 0x11;
  app[page * 4096 + 41] = 0x22;
  CHECK(d->ApplyCommit(3, 2, &page, 1, c1.data(), c1.size()) == 1);
  CHECK(d->doomed());
  d->End();
  d->Abort();
  CHECK(app[page * 4096 + 40] == 0x99 && app[page * 4096 + 41] == 0);
  CHECK(d->pages().version(page) == 3);
  // A page only read: updated in place, and its next read is recorded again.
  const uint32_t q = 8;
  d->Begin();
  uint8_t seen = app[q * 4096 + 40];
  CHECK(seen == 0);
  CHECK(d->ApplyCommit(4, 2, &q, 1, c1.data(), c1.size()) == 1);
  CHECK(app[q * 4096 + 40] == 0x99);  // faults, then sees the whole new page
  d->End();
  d->Abort();
  CHECK(app[q * 4096 + 40] == 0x99);
  CloseDsm(d);
}

// The false-sharing monitor counts each abort once, against the first commit that doomed
// it: later commits to other pages of the same transaction do not replace that cause.
TEST(the_first_commit_that_dooms_a_transaction_is_its_cause) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  const uint32_t p = 9, q = 10, r = 11;
  uint32_t page = 0;
  uint16_t node = 0;
  d->Begin();
  (void)app[p * 4096];
  app[q * 4096] = 1;
  CHECK(!d->DoomCause(&page, &node));
  CHECK(d->ApplyCommit(5, 3, &r, 1, nullptr, 0) == 0);  // a page it never touched
  CHECK(!d->DoomCause(&page, &node));
  CHECK(d->ApplyCommit(6, 2, &q, 1, nullptr, 0) == 1);  // written: dooms it
  CHECK(d->ApplyCommit(7, 4, &p, 1, nullptr, 0) == 1);  // read: dooms it again
  CHECK(d->DoomCause(&page, &node) && page == q && node == 2);
  d->End();
  d->Abort();
  // Kept after the abort (the runner reads it then), forgotten by the next transaction.
  CHECK(d->DoomCause(&page, &node) && page == q);
  d->Begin();
  CHECK(!d->DoomCause(&page, &node));
  d->End();
  d->Abort();
  CloseDsm(d);
}

// The commit ring's record, written natively for the service to read in JavaScript
// (lib/service/commit_ring.ts drain): wrapping round the ring's end, a time above 2^32,
// changes whose length is not a whole number of words.
TEST(commit_records_wrap_round_the_ring_and_pad_their_changes) {
  uint32_t ring[16];
  for (uint32_t& w : ring) w = 0xdeadbeef;
  const uint32_t pages[] = {7, 4096};
  const uint8_t changes[] = {1, 2, 3, 4, 5, 6, 7};
  const uint64_t time = (uint64_t(3) << 32) | 9;
  CHECK(dsm::CommitRecordWords(2, sizeof changes) == 8);
  // Starts four words before the end, and the counters themselves wrap at 2^32.
  const uint32_t start = 0xfffffffcu;
  const uint32_t end = dsm::PutCommitRecord(ring, 15, start, time, pages, 2, changes, sizeof changes);
  CHECK(end == 4);  // 0xfffffffc + 8, mod 2^32
  uint32_t r = start;
  auto get = [&]() { return ring[r++ & 15]; };
  CHECK(get() == 9);
  CHECK(get() == 3);
  CHECK(get() == 2);
  CHECK(get() == 7);
  CHECK(get() == 4096);
  CHECK(get() == 7);                          // bytes of changes
  CHECK(get() == 0x04030201u);                // little-endian
  CHECK(get() == 0x00070605u);                // the last word padded with zeros
  CHECK(r == end);
  CHECK(ring[4] == 0xdeadbeef && ring[11] == 0xdeadbeef);  // nothing outside the record
  // No changes at all (a commit whose pages went whole to nobody): four words and the pages.
  CHECK(dsm::PutCommitRecord(ring, 15, 0, 1, pages, 1, nullptr, 0) == 5);
  CHECK(ring[3] == 7 && ring[4] == 0);
}
