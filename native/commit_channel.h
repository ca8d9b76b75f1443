// The app thread's commit requests to the service thread and the answers back: one request
// in flight at a time (transactions of a node queue), each direction a word plus a wake-up.
// A MessagePort round trip between the two threads costs ~70 us here; this costs two
// uv_async wake-ups, which is what lets a node commit tens of thousands of times a second.
#pragma once
#include <atomic>
#include <cstdint>

namespace dsm {

class CommitChannel {
 public:
  using Notifier = void (*)(void* arg);
  enum Kind : uint32_t { kNone = 0, kCommit = 1, kSync = 2 };
  enum Status : uint32_t { kCommitted = 1, kDoomed = 2, kFailed = 3, kPartitioned = 4 };

  void SetServiceNotifier(Notifier fn, void* arg) {
    serviceArg_.store(arg, std::memory_order_release);
    serviceFn_.store(fn, std::memory_order_release);
  }
  void SetAppNotifier(Notifier fn, void* arg) {
    appArg_.store(arg, std::memory_order_release);
    appFn_.store(fn, std::memory_order_release);
  }

  // App thread. Returns false when no service is attached.
  bool Post(Kind k) {
    Notifier fn = serviceFn_.load(std::memory_order_acquire);
    if (!fn) return false;
    request_.store(k, std::memory_order_release);
    fn(serviceArg_.load(std::memory_order_acquire));
    return true;
  }
  // Service thread: the pending request kind, or kNone; taking it clears it.
  Kind Take() { return Kind(request_.exchange(kNone, std::memory_order_acq_rel)); }
  // Service thread: answers the request taken last.
  void Reply(Status s, uint64_t time) {
    time_.store(time, std::memory_order_relaxed);
    status_.store(s, std::memory_order_release);
    Notifier fn = appFn_.load(std::memory_order_acquire);
    if (fn) fn(appArg_.load(std::memory_order_acquire));
  }
  // App thread: the answer, or 0 when none arrived yet; taking it clears it.
  uint32_t TakeReply(uint64_t* time) {
    uint32_t s = status_.exchange(0, std::memory_order_acq_rel);
    *time = time_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::atomic<uint32_t> request_{kNone};
  std::atomic<uint32_t> status_{0};
  std::atomic<uint64_t> time_{0};
  std::atomic<Notifier> serviceFn_{nullptr}, appFn_{nullptr};
  std::atomic<void*> serviceArg_{nullptr}, appArg_{nullptr};
};

}  // namespace dsm
