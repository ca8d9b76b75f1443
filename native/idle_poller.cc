#include "idle_poller.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

namespace dsm {

namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "the futex word is the atomic itself");

}  // namespace

IdlePoller::~IdlePoller() {
  if (!thread_.joinable()) return;
  quit_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_release);
  FutexWake(&generation_, INT_MAX);
  thread_.join();
}

bool IdlePoller::Poll(uint64_t ns) {
  if (state_ == State::kNotStarted) {
    state_ = State::kUnusable;
    try {
      thread_ = std::thread([this] { Run(); });
    } catch (...) {
      return false;
    }
    // Made idle before it is ever asked to spin: at normal priority it would take CPU from
    // the threads that do the work. It sleeps until the first bump below.
    sched_param p{};
    if (pthread_setschedparam(thread_.native_handle(), SCHED_IDLE, &p) != 0) return false;
    state_ = State::kReady;
  }
  if (state_ != State::kReady) return false;
  deadline_.store(NowNs() + ns, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_release);
  FutexWake(&generation_, 1);
  return true;
}

void IdlePoller::Stop() {
  if (deadline_.load(std::memory_order_relaxed) == 0) return;
  deadline_.store(0, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_release);
}

void IdlePoller::Run() {
  pthread_setname_np(pthread_self(), "dsm-idle-poll");
  tid_.store(pid_t(syscall(SYS_gettid)), std::memory_order_release);
  uint32_t seen = 0;
  for (;;) {
    FutexWait(&generation_, seen);
    if (quit_.load(std::memory_order_acquire)) return;
    const uint32_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) continue;  // woken for nothing
    seen = gen;
    // Read after the generation: a Stop() (deadline 0) or a newer Poll bumps it again, and
    // the spin below ends at once.
    const uint64_t until = deadline_.load(std::memory_order_acquire);
    if (until == 0) continue;
    spinning_.store(true, std::memory_order_release);
    // No PAUSE in the loop: a hypervisor's pause-loop exiting may take a vCPU that runs
    // many of them for a spin-lock waiter and yield it to another, the halt this prevents.
    while (generation_.load(std::memory_order_acquire) == gen && NowNs() < until) {
    }
    spinning_.store(false, std::memory_order_release);
  }
}

}  // namespace dsm
