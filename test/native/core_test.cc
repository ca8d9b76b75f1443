// Native tests of the plain C++ core, with real signals, real mprotect and real threads.
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../native/dsm.h"
#include "../../native/fault_handler.h"
#include "../../native/mapped_array.h"
#include "../../native/page_diff.h"
#include "../../native/region.h"
#include "../../native/request_ring.h"
#include "../../native/wakeup.h"
#include "check.h"
#include "dsm_fixture.h"

using namespace dsm;
using namespace dsm_test;


TEST(region_views_alias_and_base_in_use) {
  Region r;
  RegionError err;
  CHECK(r.Map(kBase, 1 << 20, 12, &err));
  if (!r.mapped()) { std::fprintf(stderr, "  %s\n", err.message.c_str()); return; }
  r.sys()[5000] = 42;
  mprotect(r.app(), 1 << 20, PROT_READ);
  CHECK(r.app()[5000] == 42);
  Region r2;
  CHECK(!r2.Map(kBase + 4096, 1 << 20, 12, &err));
  CHECK(err.code == RegionError::kBaseInUse);
  Region r3;
  CHECK(!r3.Map(kBase, 1000, 12, &err));
  CHECK(err.code == RegionError::kInvalidOption);
}

TEST(page_set_add_forget_clear_compact) {
  PageSet s;
  CHECK(s.Allocate(8));
  CHECK(s.Add(3));
  CHECK(!s.Add(3));
  CHECK(s.Contains(3));
  s.Forget(3);
  CHECK(!s.Contains(3));
  for (uint32_t round = 0; round < 5; round++)
    for (uint32_t p = 0; p < 8; p++) {
      s.Add(p);
      s.Forget(p);
    }
  s.Add(1);
  uint32_t n = 0;
  s.ForEach([&](uint32_t) { n++; });
  CHECK(n == 1);
  s.Clear();
  CHECK(!s.Contains(1));
}

TEST(transaction_tracks_rolls_back_and_commits) {
  Dsm* d = OpenDsm(64 << 20);
  CHECK(d != nullptr);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  d->Begin();
  uint8_t s = app[4096 * 3];  // read fault
  app[4096 * 5] = 9;          // write fault
  (void)s;
  CHECK(d->End() == 1);
  CHECK(d->ReadSet() == std::vector<uint32_t>{3});
  CHECK(d->WriteSet() == std::vector<uint32_t>{5});
  d->Abort();
  CHECK(app[4096 * 5] == 0);
  d->Begin();
  app[4096 * 5] = 7;
  d->End();
  d->Commit(12, 1);
  CHECK(app[4096 * 5] == 7);
  CHECK(d->pages().version(5) == 12);
  CHECK(d->stats().Get(kReadFaults) >= 1 && d->stats().Get(kWriteFaults) >= 2);
  // A write outside a transaction is remembered and undone.
  app[4096 * 5] = 100;
  CHECK(d->violation());
  CHECK(d->TakeViolations() == 1);
  CHECK(app[4096 * 5] == 7);
  CloseDsm(d);
}

// Write ahead: a page this node wrote last time it committed is granted write access on
// the transaction's read fault (one fault for read-modify-write); left unchanged, it is a
// read (no write set entry, no new version) and the next read of it is a plain read again.
// A remote commit to it dooms the run, and the rollback keeps the remote change.
TEST(pages_written_last_take_one_fault_and_count_as_reads_when_unchanged) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint32_t* app = reinterpret_cast<volatile uint32_t*>(d->region().app());
  const uint32_t page = 7, w = page * 1024;
  d->Begin();
  app[w] += 1;  // never written here: a read fault, then a write fault
  CHECK(d->End() == 1);
  d->Commit(1, 1);
  CHECK(d->stats().Get(kWriteAhead) == 0);
  const uint64_t reads = d->stats().Get(kReadFaults), writes = d->stats().Get(kWriteFaults);
  d->Begin();
  app[w] += 1;  // written last time: one read fault that grants write access
  CHECK(d->End() == 1);
  CHECK(d->WriteSet() == std::vector<uint32_t>{page});
  CHECK(d->pages().state(page) == kValidUnmapped);  // written: no access until the next fault
  d->Commit(2, 1);
  CHECK(d->stats().Get(kReadFaults) == reads + 1);
  CHECK(d->stats().Get(kWriteFaults) == writes);
  CHECK(d->stats().Get(kWriteAhead) == 1);
  CHECK(d->pages().version(page) == 2);
  CHECK(app[w] == 2);
  // Only read: a read after all, the version stays, and the hint goes.
  d->Begin();
  uint32_t v = app[w];
  CHECK(v == 2);
  CHECK(d->End() == 0);
  CHECK(d->WriteSet().empty());
  CHECK(d->ReadSet() == std::vector<uint32_t>{page});
  CHECK(d->pages().state(page) == kRead);  // read-only until the next Begin, like any page read
  CHECK(d->stats().Get(kWriteAheadUnused) == 1);
  d->Commit(3, 1);
  CHECK(d->pages().version(page) == 2);
  d->Begin();
  v = app[w];
  CHECK(d->End() == 0);
  CHECK(d->stats().Get(kWriteAhead) == 2);  // no write access ahead the second time
  d->Abort();
  // Written since the hint was dropped: ahead again. A write after End() is a violation.
  d->Begin();
  app[w] = 5;
  d->End();
  d->Commit(4, 1);
  d->Begin();
  v = app[w];
  CHECK(d->stats().Get(kWriteAhead) == 3);
  d->End();
  app[w] = 6;
  CHECK(d->violation());
  d->Abort();
  CHECK(d->TakeViolations() == 1);
  CHECK(app[w] == 5);
  // A remote commit to a page granted ahead and not yet written dooms the run; its change
  // survives the rollback.
  d->Begin();
  app[w] = 7;  // (the read above left it unchanged: the hint went)
  d->End();
  d->Commit(5, 1);
  d->Begin();
  v = app[w];
  CHECK(d->stats().Get(kWriteAhead) == 4);
  std::vector<uint8_t> before(4096), after(4096);
  d->CopyCommitted(page, before.data());
  after = before;
  after[4] = 0x5a;
  std::vector<uint8_t> c(12 + 4096);
  const uint64_t prev = 5;
  const uint32_t len = uint32_t(EncodeDiff(before.data(), after.data(), 4096, c.data() + 12));
  memcpy(c.data(), &prev, 8);
  memcpy(c.data() + 8, &len, 4);
  c.resize(12 + len);
  CHECK(d->ApplyCommit(6, 2, &page, 1, c.data(), c.size()) == 1);
  CHECK(d->doomed());
  CHECK(d->End() == 1);  // the shadow took the change: no longer equal
  d->Abort();
  CHECK(app[w] == 7 && reinterpret_cast<volatile uint8_t*>(app)[page * 4096 + 4] == 0x5a);
  CHECK(d->pages().version(page) == 6);
  CloseDsm(d);
}

// A write outside any transaction while a transaction's commit is pending (after End(),
// before the commit is decided): when that transaction aborts, undoing the violation must
// restore the last committed contents, never the aborted transaction's writes.
TEST(violation_during_a_pending_commit_never_resurrects_aborted_writes) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  const uint32_t page = 9;
  d->Begin();
  app[page * 4096] = 0x11;  // the transaction's write, then its function returns
  d->End();
  app[page * 4096 + 1] = 0x22;  // a write outside the transaction while its commit is pending
  CHECK(d->violation());
  d->Abort();  // the commit failed
  std::vector<uint8_t> out(4096);
  d->CopyCommittedPages(&page, 1, out.data());
  CHECK(out[0] == 0 && out[1] == 0);  // what peers are served: the last committed contents
  CHECK(d->TakeViolations() == 1);
  CHECK(app[page * 4096] == 0 && app[page * 4096 + 1] == 0);
  // The same, with the commit going through: the violation is undone back to the commit.
  d->Begin();
  app[page * 4096] = 0x33;
  d->End();
  app[page * 4096 + 1] = 0x44;
  d->Commit(5, 1);
  CHECK(d->TakeViolations() == 1);
  CHECK(app[page * 4096] == 0x33 && app[page * 4096 + 1] == 0);
  CloseDsm(d);
}

TEST(alternating_pages_beyond_max_map_count_complete) {
  const uint32_t pages = 200000;
  Dsm* d = OpenDsm(size_t(pages) * 4096);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  unsigned sum = 0;
  for (uint32_t p = 0; p < pages; p += 2) sum += app[size_t(p) * 4096];
  CHECK(sum == 0);
  CHECK(d->stats().Get(kProtectionResets) > 0);
  CloseDsm(d);
}

// The service's answer in these tests: the page, filled with 0x5a, at version 3 of node 2.
static void AnswerWithPattern(Dsm* d, const Request& r) {
  uint8_t page[4096];
  memset(page, 0x5a, sizeof page);
  d->Install(r.page, page, 3, 2);
  d->ring().Complete(r.ticket);
}

TEST(invalidate_pages_is_invalidate_of_each_in_one_call) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  // Page 6 holds version 9 already: an older version names nothing newer, it stays.
  const uint32_t one = 6;
  const uint64_t nine = 9;
  const uint16_t owner = 1;
  d->Invalidate(6, 9, 1);
  std::vector<uint8_t> page(4096, 0x33);
  CHECK(d->InstallPages(&one, &nine, &owner, 1, page.data()) == 1);
  d->Begin();
  (void)app[8 * 4096];
  const uint32_t pages[] = {5, 6, 8, 9};
  const uint64_t versions[] = {4, 7, 4, 0};
  const uint16_t owners[] = {2, 2, 2, 3};
  CHECK(d->InvalidatePages(pages, versions, owners, 4));  // page 8 was read: doomed
  CHECK(d->doomed());
  CHECK(d->pages().state(5) == kInvalid && d->pages().version(5) == 4 && d->pages().owner(5) == 2);
  CHECK(d->pages().state(6) != kInvalid && d->pages().version(6) == 9);
  CHECK(d->pages().state(8) == kInvalid && d->pages().version(8) == 4);
  CHECK(d->pages().state(9) == kInvalid && d->pages().version(9) == 0 && d->pages().owner(9) == 3);
  d->End();
  d->Abort();
  CloseDsm(d);
}

TEST(service_thread_installs_invalid_page) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  static std::atomic<bool> poke{false};
  d->ring().SetNotifier([](void*) { poke = true; }, nullptr);
  d->Invalidate(7, 3, 2);
  std::atomic<bool> stop{false};
  std::thread service([&] {
    d->SetServiceThread(pthread_self(), true);
    while (!stop) {
      Request r[4];
      uint32_t n = d->ring().Take(r, 4);
      for (uint32_t k = 0; k < n; k++) AnswerWithPattern(d, r[k]);
      if (!n) sched_yield();
    }
  });
  volatile uint8_t* app = d->region().app();
  CHECK(app[7 * 4096 + 1] == 0x5a);
  CHECK(d->stats().Get(kServiceFaults) == 1);
  // A remote commit of a page the live transaction read dooms it.
  d->Begin();
  (void)app[8 * 4096];
  CHECK(d->Invalidate(8, 4, 2));
  CHECK(d->doomed());
  d->End();
  d->Abort();
  stop = true;
  service.join();
  d->ring().SetNotifier(nullptr, nullptr);
  CloseDsm(d);
}

TEST(refused_run_faults_end_on_scratch_and_leave_the_page_invalid) {
  // A node with no quorum: its service takes the fault but can fetch nothing. Refusing
  // wakes the transaction's fault onto scratch memory, and the page is untouched after.
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  d->ring().SetNotifier([](void*) {}, nullptr);
  d->Invalidate(7, 3, 2);
  d->Invalidate(9, 3, 2);
  std::atomic<bool> stop{false}, answer{false}, quorum{false};
  std::atomic<uint32_t> inRunTaken{0}, woken{0};
  std::thread service([&] {
    d->SetServiceThread(pthread_self(), true);
    while (!stop) {
      Request r[4];
      uint32_t n = d->ring().Take(r, 4);
      for (uint32_t k = 0; k < n; k++) {
        if ((r[k].flags & kRequestInRun) && !quorum) {
          inRunTaken++;
          woken += d->RefuseRunFaults(true);  // as cluster.ts does once the quorum is gone
          continue;
        }
        while (!answer) sched_yield();  // a fault outside a transaction waits for its page
        AnswerWithPattern(d, r[k]);
      }
      if (!n) sched_yield();
    }
  });
  volatile uint8_t* app = d->region().app();
  d->Begin();
  CHECK(app[7 * 4096 + 1] == 0);  // scratch, not the page
  CHECK(inRunTaken == 1 && woken == 1);
  CHECK(d->doomed());
  app[7 * 4096 + 1] = 0x33;  // the run's writes land in its scratch
  const uint64_t asked = d->stats().Get(kServiceFaults);
  CHECK(app[9 * 4096] == 0);  // doomed and refused: scratch at once, nothing asked
  CHECK(d->stats().Get(kServiceFaults) == asked);
  CHECK(d->stats().Get(kRefusedFaults) == 2);
  d->End();
  d->Abort();
  CHECK(d->pages().state(7) == kInvalid && d->pages().state(9) == kInvalid);
  // Outside a transaction a fault is not refused: it waits for its page.
  answer = true;
  CHECK(app[7 * 4096 + 1] == 0x5a);
  // The quorum is back: a transaction's fault is answered again.
  quorum = true;
  d->RefuseRunFaults(false);
  d->Begin();
  CHECK(app[9 * 4096] == 0x5a && !d->doomed());
  d->End();
  d->Abort();
  stop = true;
  service.join();
  d->ring().SetNotifier(nullptr, nullptr);
  CloseDsm(d);
}

TEST(batched_install_grants_outside_transactions_and_copies_committed) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  // Pages 60..139 fetched in one batch (a run that crosses the tripwire pages 96 and 160-).
  const uint32_t first = 60, n = 80;
  std::vector<uint32_t> pages(n);
  std::vector<uint64_t> versions(n, 9);
  std::vector<uint16_t> owners(n, 3);
  std::vector<uint8_t> data(size_t(n) * 4096);
  for (uint32_t i = 0; i < n; i++) {
    pages[i] = first + i;
    d->Invalidate(first + i, 9, 3);
    memset(&data[size_t(i) * 4096], int(i + 1), 4096);
  }
  // Page 61 is already newer here: the batch must not overwrite it.
  d->Invalidate(61, 10, 4);
  CHECK(d->InstallPages(pages.data(), versions.data(), owners.data(), n, data.data()) == n - 1);
  CHECK(d->pages().state(61) == kInvalid && d->pages().version(61) == 10);
  CHECK(d->pages().state(60) == kRead);                          // granted: no fault to read it
  CHECK(d->pages().state(96) == kValidUnmapped);                 // the tripwire (96 % 64 == 32)
  volatile uint8_t* app = d->region().app();
  const uint64_t faults = d->stats().Get(kReadFaults);
  CHECK(app[60 * 4096 + 100] == 1 && app[139 * 4096 + 4095] == 80);
  CHECK(d->stats().Get(kReadFaults) == faults);
  CHECK(app[96 * 4096] == 37);
  CHECK(d->stats().Get(kReadFaults) == faults + 1);
  CHECK(d->lastReadFault() == 96);
  // Inside a transaction installed pages stay unmapped, so the first read is tracked.
  d->Invalidate(200, 9, 3);
  d->Invalidate(201, 9, 3);
  d->Begin();
  uint32_t two[2] = {200, 201};
  uint64_t v2[2] = {9, 9};
  uint16_t o2[2] = {3, 3};
  CHECK(d->InstallPages(two, v2, o2, 2, nullptr) == 2);
  CHECK(d->pages().state(200) == kValidUnmapped);
  CHECK(app[200 * 4096] == 0);
  CHECK(d->ReadSet() == std::vector<uint32_t>{200});
  // A page the transaction wrote: others get its committed contents, not the new ones.
  app[62 * 4096] = 0xee;
  std::vector<uint8_t> out(3 * 4096);
  uint32_t three[3] = {62, 63, 64};
  d->CopyCommittedPages(three, 3, out.data());
  CHECK(out[0] == 3 && out[4096] == 4 && out[2 * 4096 + 17] == 5);
  d->End();
  d->Commit(11, 0);
  d->CopyCommittedPages(three, 1, out.data());
  CHECK(out[0] == 0xee && out[1] == 3);
  CloseDsm(d);
}

// Runs `body` in a forked child with stderr captured; returns the child's wait status.
template <typename F>
static int InChild(F body, std::string* err) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    body();
    _exit(0);
  }
  close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) err->append(buf, size_t(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// A fatal error inside the fault handler names the errno without strerror(), which is not
// async-signal-safe: the app view's page is unmapped behind the DSM's back, so granting it
// fails with ENOMEM.
TEST(fatal_errors_in_the_fault_handler_name_errno_signal_safely) {
  std::string err;
  int status = InChild(
      [] {
        Dsm* d = OpenDsm(16 << 20);
        if (!d) _exit(3);
        munmap(d->region().AppPage(4), 4096);
        d->region().app()[4 * 4096 + 8] = 1;
      },
      &err);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  CHECK(err.find("mprotect of the app view failed (page 4, ENOMEM, errno 12)") != std::string::npos);
  if (err.find("ENOMEM") == std::string::npos) std::fprintf(stderr, "  child said: %s\n", err.c_str());
}

static std::atomic<int> g_prevCalls{0};
static void PrevHandler(int, siginfo_t* info, void*) {
  g_prevCalls++;
  uintptr_t pg = uintptr_t(info->si_addr) & ~uintptr_t(4095);
  mprotect(reinterpret_cast<void*>(pg), 4096, PROT_READ | PROT_WRITE);
}

TEST(faults_outside_the_region_reach_the_previous_handler) {
  struct sigaction sa = {}, old;
  sa.sa_sigaction = PrevHandler;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, &old);
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  void* m = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  static_cast<volatile uint8_t*>(m)[10] = 1;
  CHECK(g_prevCalls == 1);
  munmap(m, 4096);
  CloseDsm(d);
  sigaction(SIGSEGV, &old, nullptr);
}

int main() {
  for (auto& c : check::cases()) {
    int before = check::failures();
    c.fn();
    std::printf("%s %s\n", check::failures() == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("native tests: %zu run, %d failed checks\n", check::cases().size(), check::failures());
  return check::failures() ? 1 : 0;
}
