// The lock that serialises page-state transitions (fault handler, transaction begin/end,
// page installation by the service thread). A spin lock because the fault handler may take
// it: no futex-based mutex is async-signal-safe. Holders never block and never touch the
// app view, so waits are as short as one mprotect.
#pragma once
#include <pthread.h>
#include <sched.h>

#include <atomic>

namespace dsm {

class SpinLock {
 public:
  // Returns false when the calling thread already holds the lock: a signal interrupted
  // the holder and the handler re-entered. The caller must treat that as fatal.
  bool Lock() {
    pthread_t self = pthread_self();
    if (held_.load(std::memory_order_relaxed) && pthread_equal(owner_, self)) return false;
    for (unsigned spins = 0; held_.exchange(true, std::memory_order_acquire); spins++) {
      if (spins > 64) sched_yield();
    }
    owner_ = self;
    return true;
  }
  void Unlock() {
    owner_ = pthread_t();
    held_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> held_{false};
  pthread_t owner_{};
};

class SpinGuard {
 public:
  explicit SpinGuard(SpinLock& l) : l_(l) { ok_ = l_.Lock(); }
  ~SpinGuard() {
    if (ok_) l_.Unlock();
  }
  bool ok() const { return ok_; }

 private:
  SpinLock& l_;
  bool ok_;
};

}  // namespace dsm
