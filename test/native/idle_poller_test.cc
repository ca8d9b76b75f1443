// Native tests of the idle poller (native/idle_poller.cc): its thread runs at SCHED_IDLE,
// spins (uses CPU) only between Poll and Stop or Poll's time limit, and sleeps otherwise.
// CPU use is read from the kernel (/proc/self/task/TID/schedstat, ns of run time): a thread
// blocked on a condition variable gains none, whatever the machine's load.
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "../../native/idle_poller.h"
#include "check.h"

using namespace dsm;

namespace {

// Run time of thread `tid` so far, in ns (-1: unreadable).
long long RunNs(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/schedstat");
  long long ns = -1;
  f >> ns;
  return ns;
}

// The scheduling policy of thread `tid` (field 41 of its stat line).
int Policy(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(f, line);
  // Fields after the command (which may hold spaces) start past the last ')'.
  size_t at = line.rfind(')');
  if (at == std::string::npos) return -1;
  int field = 2;
  std::string tok;
  for (size_t i = at + 2; i <= line.size(); i++) {
    if (i == line.size() || line[i] == ' ') {
      field++;
      if (field == 41) return std::stoi(tok);
      tok.clear();
    } else {
      tok += line[i];
    }
  }
  return -1;
}

// Waits (up to 10 s) for `cond`; false if it never held.
template <typename F>
bool WaitFor(F cond) {
  for (int i = 0; i < 10000; i++) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

}  // namespace

TEST(idle_poller_spins_at_idle_priority_between_poll_and_stop_and_sleeps_otherwise) {
  IdlePoller p;
  CHECK(p.tid() == 0);  // no thread before the first Poll
  CHECK(p.Poll(10'000'000'000ull));
  CHECK(WaitFor([&] { return p.tid() > 0; }));  // set by the thread once it runs
  const pid_t tid = p.tid();
  CHECK(Policy(tid) == SCHED_IDLE);
  CHECK(WaitFor([&] { return p.spinning(); }));
  // It runs while it spins (at idle priority it may get little CPU on a busy machine, but some).
  const long long before = RunNs(tid);
  CHECK(WaitFor([&] { return RunNs(tid) > before; }));
  p.Stop();
  CHECK(WaitFor([&] { return !p.spinning(); }));
  // Asleep: no run time at all over a while.
  const long long asleep = RunNs(tid);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(RunNs(tid) - asleep < 1'000'000);
  // A spin ends on its own at its limit, and the same thread takes the next one.
  CHECK(p.Poll(2'000'000));
  CHECK(WaitFor([&] { return !p.spinning() && RunNs(tid) > asleep; }));
  const long long ended = RunNs(tid);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(RunNs(tid) - ended < 1'000'000);
  CHECK(p.tid() == tid);
  // A second Poll while one spins extends it; Stop twice is harmless.
  CHECK(p.Poll(10'000'000'000ull));
  CHECK(p.Poll(10'000'000'000ull));
  CHECK(WaitFor([&] { return p.spinning(); }));
  p.Stop();
  p.Stop();
  CHECK(WaitFor([&] { return !p.spinning(); }));
}

TEST(idle_poller_destroyed_while_spinning_joins_its_thread) {
  pid_t tid = 0;
  {
    IdlePoller p;
    CHECK(p.Poll(10'000'000'000ull));
    CHECK(WaitFor([&] { return p.spinning(); }));
    tid = p.tid();
  }
  // The thread is gone with the poller.
  CHECK(access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) != 0);
}
