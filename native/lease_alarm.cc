#include "lease_alarm.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "dsm.h"

namespace dsm {
namespace lease_alarm {
namespace {

std::atomic<Dsm*> g_dsm{nullptr};
std::mutex g_mu;
int g_signal = 0;  // the real-time signal taken, once per process
timer_t g_timer{};
bool g_hasTimer = false;

void OnAlarm(int, siginfo_t*, void*) {
  const int savedErrno = errno;
  if (Dsm* d = g_dsm.load(std::memory_order_acquire)) d->FenceOnAlarm();
  errno = savedErrno;
}

// The first real-time signal from the top that nobody handles: Node and V8 take none, but
// another addon might.
bool InstallLocked() {
  if (g_signal) return true;
  for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 2; sig--) {
    struct sigaction cur;
    if (sigaction(sig, nullptr, &cur) != 0) continue;
    if ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL) continue;
    struct sigaction sa = {};
    sa.sa_sigaction = OnAlarm;
    // SA_RESTART: the app thread's own system calls go on; a futex wait re-checks its word.
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, nullptr) != 0) return false;
    g_signal = sig;
    return true;
  }
  errno = EBUSY;
  return false;
}

}  // namespace

bool Attach(Dsm* d) {
  std::lock_guard<std::mutex> g(g_mu);
  if (!InstallLocked()) return false;
  if (!g_hasTimer) {
    struct sigevent ev = {};
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = g_signal;
    ev._sigev_un._tid = pid_t(syscall(SYS_gettid));
    if (timer_create(CLOCK_MONOTONIC, &ev, &g_timer) != 0) return false;
    g_hasTimer = true;
  }
  g_dsm.store(d, std::memory_order_release);
  return true;
}

void Arm(int64_t untilMs) {
  // Only ever moved to a deadline still ahead. Setting a POSIX timer discards the signal of
  // an expiry already queued (the kernel drops it as stale when it is dequeued), and a
  // stopped process's service thread, resumed beside its app thread, set the lease to
  // "out" (0) before the app thread took the signal: the app ran on, unfenced. A deadline
  // that has passed needs no new alarm (it has fired, or its signal is queued), and no
  // alarm is ever taken back: one that comes after the lease was renewed for good, or
  // again, finds the lease valid and does nothing (Dsm::FenceOnAlarm).
  if (untilMs <= 0 || untilMs == INT64_MAX || untilMs <= Dsm::MonotonicMs()) return;
  std::lock_guard<std::mutex> g(g_mu);
  if (!g_hasTimer) return;
  struct itimerspec t = {};
  t.it_value.tv_sec = time_t(untilMs / 1000);
  t.it_value.tv_nsec = long(untilMs % 1000) * 1000000L;
  timer_settime(g_timer, TIMER_ABSTIME, &t, nullptr);
}

void Detach() {
  std::lock_guard<std::mutex> g(g_mu);
  g_dsm.store(nullptr, std::memory_order_release);
  if (g_hasTimer) timer_delete(g_timer);
  g_hasTimer = false;
}

}  // namespace lease_alarm
}  // namespace dsm
