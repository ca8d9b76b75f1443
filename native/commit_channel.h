// The app thread's commit requests to the service thread and the answers back: one request
// in flight at a time (transactions of a node queue), each direction a word plus a wake-up.
// A MessagePort round trip between the two threads costs ~70 us here; this costs two
// uv_async wake-ups, which is what lets a node commit tens of thousands of times a second.
#pragma once
#include <atomic>
#include <cstdint>

#include "wakeup.h"

namespace dsm {

class CommitChannel {
 public:
  using Notifier = Wakeup::Fn;
  // Kinds the app posts. kHold takes the token for the app's next run (so it cannot be
  // doomed: anti-starvation after repeated conflicts); kRelease gives it back when that
  // run commits nothing. The service acts on them; this channel only carries them.
  enum Kind : uint32_t { kNone = 0, kCommit = 1, kSync = 2, kHold = 3, kRelease = 4 };
  static constexpr uint32_t kKindLimit = 5;  // kinds are below this
  enum Status : uint32_t { kCommitted = 1, kDoomed = 2, kFailed = 3, kPartitioned = 4 };

  // Installing or removing a wake-up (nullptr) waits for a wake-up in progress (wakeup.h).
  void SetServiceNotifier(Notifier fn, void* arg) { serviceWake_.Set(fn, arg); }
  void SetAppNotifier(Notifier fn, void* arg) { appWake_.Set(fn, arg); }

  // App thread. Returns false when no service is attached.
  bool Post(Kind k) {
    if (!serviceWake_.armed()) return false;
    request_.store(k, std::memory_order_release);
    if (serviceWake_.Send()) return true;
    request_.store(kNone, std::memory_order_release);  // the service left meanwhile
    return false;
  }
  // Service thread: the pending request kind, or kNone; taking it clears it.
  Kind Take() { return Kind(request_.exchange(kNone, std::memory_order_acq_rel)); }
  // Service thread: answers the request taken last.
  void Reply(Status s, uint64_t time) {
    time_.store(time, std::memory_order_relaxed);
    status_.store(s, std::memory_order_release);
    appWake_.Send();
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
  Wakeup serviceWake_, appWake_;
};

}  // namespace dsm
