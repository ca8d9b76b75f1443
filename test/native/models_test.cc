// Native tests of the consistency models' page mechanics (native/models.cc): pages outside
// transactions are never tracked, shadowed or revoked; an aborted run's declarations
// vanish; sequential faults reach the service only without the right access; another
// node's local page is refused; the lease alarm fences on the app thread. Real signals, real mprotect, a real service thread.
#include <sched.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include "../../native/dsm.h"
#include "../../native/fault_handler.h"
#include "../../native/lease_alarm.h"
#include "check.h"

using namespace dsm;

namespace {

const uintptr_t kModelsBase = 0x218000000000;
constexpr size_t kPage = 4096;

Dsm* Open() {
  auto* d = new Dsm();
  RegionError err;
  Options o;
  o.base = kModelsBase;
  o.size = 16 << 20;
  if (!d->Open(o, &err)) {
    std::fprintf(stderr, "open failed: %s\n", err.message.c_str());
    delete d;
    return nullptr;
  }
  fault_handler::Attach(d);
  return d;
}

void Close(Dsm* d) {
  fault_handler::Detach();
  delete d;
}

// Commits a transaction that declares `model` for `count` pages from `first`.
void Allocate(Dsm* d, uint32_t first, uint32_t count, uint8_t model, uint64_t time) {
  d->Begin();
  d->DeclareModel(first, count, model);
  d->End();
  d->Commit(time, 1);
}

// A service thread answering requests with `answer(request)`, until stopped.
class Service {
 public:
  template <typename F>
  Service(Dsm* d, F answer) : d_(d) {
    d->ring().SetNotifier([](void*) {}, nullptr);
    t_ = std::thread([this, answer] {
      d_->SetServiceThread(pthread_self(), true);
      while (!stop_) {
        Request r[8];
        const uint32_t n = d_->ring().Take(r, 8);
        for (uint32_t k = 0; k < n; k++) {
          seen_.push_back(r[k]);
          answer(r[k]);
          d_->ring().Complete(r[k].ticket);
        }
        if (!n) sched_yield();
      }
    });
  }
  ~Service() {
    stop_ = true;
    t_.join();
    d_->ring().SetNotifier(nullptr, nullptr);
  }
  // Requests answered so far (read after the faults that made them returned).
  std::vector<Request> seen() const { return seen_; }

 private:
  Dsm* d_;
  std::atomic<bool> stop_{false};
  std::vector<Request> seen_;
  std::thread t_;
};

}  // namespace

TEST(untracked_pages_are_not_read_or_write_set_shadowed_revoked_or_rolled_back) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  Allocate(d, 64, 4, kSequential, 5);
  CHECK(d->pages().model(64) == (kSequential | kHere) && d->pages().model(67) == (kSequential | kHere));
  CHECK(d->pages().model(68) == kTransactional);
  std::vector<Dsm::ModelChange> c;
  d->TakeModelChanges(5, &c);
  CHECK(c.size() == 1 && c[0].first == 64 && c[0].count == 4 && c[0].model == kSequential && c[0].time == 5);
  // Outside a transaction: a write is no violation.
  app[64 * kPage] = 1;
  CHECK(!d->violation());
  // Inside one: neither in the read set nor the write set, and an abort keeps the write.
  d->Begin();
  app[65 * kPage] = 2;
  (void)app[66 * kPage];
  app[10 * kPage] = 3;  // a transactional page next to them
  CHECK(d->End() == 1);
  CHECK(d->ReadSet().empty());
  CHECK(d->WriteSet() == std::vector<uint32_t>{10});
  d->Abort();  // restores shadows, revoking the whole region
  CHECK(app[65 * kPage] == 2 && app[10 * kPage] == 0);
  // The whole-region revoke and the next Begin() left the granted untracked pages alone:
  // touching them again costs no fault.
  const uint64_t faults = d->stats().Get(kReadFaults) + d->stats().Get(kWriteFaults);
  d->Begin();
  app[64 * kPage] = 4;
  app[65 * kPage] = 5;
  (void)app[66 * kPage];
  d->End();
  d->Abort();
  CHECK(d->stats().Get(kReadFaults) + d->stats().Get(kWriteFaults) == faults);
  CHECK(app[64 * kPage] == 4 && app[65 * kPage] == 5);
  Close(d);
}

TEST(an_aborted_runs_model_declarations_vanish_and_freeing_zeroes) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  d->Begin();
  d->DeclareModel(80, 2, kLocal);
  d->End();
  d->Abort();
  CHECK(d->pages().model(80) == kTransactional);
  std::vector<Dsm::ModelChange> c;
  d->TakeModelChanges(100, &c);
  CHECK(c.empty());
  // A declaration of an earlier run does not survive into the next one either.
  d->Begin();
  d->DeclareModel(80, 2, kLocal);
  d->End();
  d->Begin();
  d->End();
  d->Commit(6, 1);
  CHECK(d->pages().model(80) == kTransactional);
  // Allocated, written, freed: transactional again, and zero.
  Allocate(d, 80, 2, kLocal, 7);
  app[81 * kPage + 5] = 9;
  Allocate(d, 80, 2, kTransactional, 8);
  CHECK(d->pages().model(81) == kTransactional);
  d->Begin();
  CHECK(app[81 * kPage + 5] == 0);
  d->End();
  d->Abort();
  Close(d);
}

TEST(sequential_faults_reach_the_service_only_without_the_right_access) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  // Another node (2) allocated page 90: nothing is here until its owner sends it.
  d->SetModel(90, 1, kSequential, 2);
  CHECK(d->pages().state(90) == kInvalid && d->pages().owner(90) == 2);
  std::vector<uint8_t> data(kPage, 0x42);
  {
    Service s(d, [&](const Request& r) { d->InstallSequential(r.page, data.data(), (r.flags & kRequestWrite) != 0, (r.flags & kRequestWrite) ? 1 : 2); });
    CHECK(app[90 * kPage + 7] == 0x42);  // read: a copy
    CHECK(app[90 * kPage + 8] == 0x42);  // no second request
    app[90 * kPage] = 1;                 // write: ownership
    app[90 * kPage + 1] = 2;             // no request: owned here, no other copy
    const auto seen = s.seen();
    CHECK(seen.size() == 2);
    if (seen.size() == 2) CHECK(seen[0].flags == 0 && seen[1].flags == kRequestWrite);
  }
  CHECK(d->pages().model(90) == (kSequential | kHere) && d->pages().owner(90) == 1);
  // A reader elsewhere: the owner keeps a read-only copy, the copy sent is the latest.
  std::vector<uint8_t> out(kPage);
  CHECK(d->ShareSequential(90, out.data(), false, 0));
  CHECK(out[0] == 1 && out[1] == 2 && out[7] == 0x42);
  CHECK(d->pages().state(90) == kRead && d->pages().model(90) == kSequential);
  {
    // The next write asks the service (which invalidates the reader, then owns it again).
    Service s(d, [&](const Request& r) { d->OwnSequential(r.page); });
    app[90 * kPage + 2] = 3;
    CHECK(s.seen().size() == 1);
  }
  // Ownership moves away: the copy here goes; the old contents cannot be read here again.
  CHECK(d->ShareSequential(90, out.data(), true, 3));
  CHECK(out[2] == 3);
  CHECK(d->pages().state(90) == kInvalid && d->pages().owner(90) == 3);
  {
    std::vector<uint8_t> newer(kPage, 0x77);
    Service s(d, [&](const Request& r) { d->InstallSequential(r.page, newer.data(), false, 3); });
    CHECK(app[90 * kPage + 2] == 0x77);
  }
  Close(d);
}

TEST(fenced_sequential_and_migratory_pages_ask_the_service_until_the_fence_is_lifted) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  Allocate(d, 100, 1, kSequential, 7);
  Allocate(d, 101, 1, kMigratory, 7);
  Allocate(d, 102, 1, kLocal, 7);
  app[100 * kPage] = 1;  // owned here, no other copy: granted in the handler
  app[101 * kPage] = 2;
  app[102 * kPage] = 3;
  CHECK(d->pages().state(100) == kWrite && d->pages().state(101) == kWrite);
  // The lease ran out: the owned pages lose their access and keep their contents; a local
  // page is this node's alone and keeps it.
  CHECK(d->Fence(true) == 2);
  CHECK(d->fenced() && d->pages().state(100) == kValidUnmapped && d->pages().state(101) == kValidUnmapped);
  {
    // Each touch asks the service, which lifts the fence (the lease is back) before it answers.
    Service s(d, [&](const Request&) { d->Fence(false); });
    CHECK(app[100 * kPage] == 1);
    CHECK(s.seen().size() == 1);
    app[101 * kPage] = 4;  // not fenced any more: granted in the handler
    app[102 * kPage] = 5;
    CHECK(s.seen().size() == 1);
  }
  CHECK(!d->fenced() && app[101 * kPage] == 4 && app[102 * kPage] == 5);
  {
    // Fenced again: a write asks the service too, reads and writes after the answer need nothing more.
    CHECK(d->Fence(true) == 2);
    Service s(d, [&](const Request& r) {
      CHECK(r.page == 100 && (r.flags & kRequestWrite));
      d->Fence(false);
    });
    app[100 * kPage + 1] = 6;
    CHECK(app[100 * kPage] == 1 && app[100 * kPage + 1] == 6);
    CHECK(s.seen().size() == 1);
  }
  Close(d);
}

// Waits up to `ms` for `done`, without a system call: the alarm's signal must come in the
// middle of the program's own code, as it does for an app thread resumed from SIGSTOP.
template <typename F>
bool SpinUntil(int64_t ms, F done) {
  const int64_t end = Dsm::MonotonicMs() + ms;
  while (Dsm::MonotonicMs() < end) {
    if (done()) return true;
  }
  return done();
}

TEST(the_lease_alarm_fences_on_the_app_thread_when_the_lease_runs_out_and_never_after_a_renewal) {
  Dsm* d = Open();
  if (!d) return;
  CHECK(lease_alarm::Attach(d));
  volatile uint8_t* app = d->region().app();
  Allocate(d, 100, 1, kSequential, 7);
  Allocate(d, 101, 1, kMigratory, 7);
  app[100 * kPage] = 1;
  app[101 * kPage] = 2;
  const uint64_t alarms = d->stats().Get(kLeaseAlarms);
  // Renewed before it ran out: the alarm moves, nothing is fenced.
  d->SetServingLease(20);
  lease_alarm::Arm(d->servingUntilMs());
  d->SetServingLease(60000);
  lease_alarm::Arm(d->servingUntilMs());
  CHECK(!SpinUntil(200, [&] { return d->fenced(); }));
  CHECK(d->pages().state(100) == kWrite && d->pages().state(101) == kWrite);
  // Run out: this thread fences its pages itself, with no service thread at all.
  d->SetServingLease(20);
  lease_alarm::Arm(d->servingUntilMs());
  CHECK(SpinUntil(10000, [&] { return d->fenced(); }));
  CHECK(d->pages().state(100) == kValidUnmapped && d->pages().state(101) == kValidUnmapped);
  CHECK(d->stats().Get(kLeaseAlarms) == alarms + 1);
  // The service's own fence counts the pages the alarm took, and lifts it as before.
  CHECK(d->Fence(true) == 2);
  CHECK(d->Fence(false) == 0 && !d->fenced());
  {
    Service s(d, [&](const Request&) {});
    app[100 * kPage] = 3;  // back to the owner's write access
  }
  // A signal that arrives after a renewal (the timer fired as the service renewed) is stale.
  d->SetServingLease(60000);
  d->FenceOnAlarm();
  CHECK(!d->fenced() && d->pages().state(100) == kWrite);
  lease_alarm::Detach();
  Close(d);
}

TEST(another_nodes_local_page_is_refused_on_every_touch) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  d->SetModel(95, 1, kLocal, 2);
  {
    Service s(d, [&](const Request& r) { d->RefuseLocal(r.page); });
    CHECK(app[95 * kPage] == 0);
    CHECK(d->TakeLocalTouched() == 95);
    CHECK(d->TakeLocalTouched() == -1);
    // Inside a transaction the touch is refused again and dooms it.
    d->Begin();
    (void)app[95 * kPage + 1];
    CHECK(d->doomed());
    CHECK(d->TakeLocalTouched() == 95);
    d->End();
    d->Abort();
  }
  Close(d);
}

TEST(a_migratory_page_is_touched_only_where_it_is_owned) {
  Dsm* d = Open();
  if (!d) return;
  volatile uint8_t* app = d->region().app();
  d->SetModel(99, 1, kMigratory, 2);
  std::vector<uint8_t> data(kPage, 0x31);
  {
    Service s(d, [&](const Request& r) { d->InstallSequential(r.page, data.data(), true, 1); });
    CHECK(app[99 * kPage] == 0x31);  // a read asks for the page itself, not a copy
    app[99 * kPage] = 0x32;          // and the write after it needs nothing more
    const auto seen = s.seen();
    CHECK(seen.size() == 1);
    if (!seen.empty()) CHECK(seen[0].flags == kRequestWrite);
  }
  CHECK(d->pages().model(99) == (kMigratory | kHere));
  // Moving on: nothing of it stays here.
  std::vector<uint8_t> out(kPage);
  CHECK(d->ShareSequential(99, out.data(), true, 3));
  CHECK(out[0] == 0x32 && d->pages().state(99) == kInvalid && d->pages().model(99) == kMigratory);
  Close(d);
}

TEST(a_lost_page_is_declared_again_only_while_lost_and_another_nodes_model_change_dooms_the_run) {
  Dsm* d = Open();
  if (!d) return;
  const uint16_t kLost = 0xfffe;
  // A lost sequential page, with the zero page a touch made here written since.
  d->SetModel(110, 2, kSequential, 2);
  d->InstallSequential(110, nullptr, true, kLost);
  memset(d->region().SysPage(110), 7, kPage);
  // Still lost: declared, and the copy here zeroed (it is this node's alone).
  d->Begin();
  CHECK(d->DeclareLost(110, kSequential, kLost));
  CHECK(d->region().SysPage(110)[9] == 0);
  // Another node's discard of it arrives before this run commits: the run is doomed.
  d->SetModel(110, 1, kSequential, 3);
  CHECK(d->doomed());
  d->End();
  d->Abort();
  // Not lost any more (its owner is node 3 now): nothing declared.
  d->Begin();
  CHECK(!d->DeclareLost(110, kSequential, kLost));
  d->End();
  d->Commit(9, 1);
  std::vector<Dsm::ModelChange> c;
  d->TakeModelChanges(100, &c);
  CHECK(c.empty());
  CHECK(d->pages().owner(110) == 3);
  // A model change for a page the run did not declare dooms nothing.
  d->Begin();
  d->SetModel(111, 1, kSequential, 3);
  CHECK(!d->doomed());
  d->End();
  d->Abort();
  Close(d);
}
