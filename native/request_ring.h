// Hands faults that need the network from the faulting thread (inside the signal handler)
// to the service thread, and the answer back. Signal-safe on the producer side: a slot is
// claimed with a CAS, the consumer is poked through a notifier (uv_async_send in the addon,
// documented async-signal-safe), and the producer sleeps on the slot's futex word.
#pragma once
#include <atomic>
#include <cstdint>

namespace dsm {

struct Request {
  uint32_t slot;
  uint32_t page;
  uint32_t flags;  // kRequestWrite
};

enum : uint32_t { kRequestWrite = 1 };

class RequestRing {
 public:
  static constexpr uint32_t kSlots = 64;
  using Notifier = void (*)(void* arg);

  // Installs (or with nullptr, removes) the consumer's wake-up. Not signal-safe; called
  // by the service thread when it attaches and detaches.
  void SetNotifier(Notifier fn, void* arg);
  bool HasConsumer() const { return notifier_.load(std::memory_order_acquire) != nullptr; }

  // Producer (signal handler): posts a request and blocks until Complete(). Returns false
  // when no consumer is attached, so the caller can report instead of sleeping forever.
  bool PostAndWait(uint32_t page, uint32_t flags);

  // Consumer: copies up to `max` pending requests into `out`, returns how many.
  uint32_t Take(Request* out, uint32_t max);
  // Consumer: wakes the producer of `slot`.
  void Complete(uint32_t slot);
  // Consumer, on detach: wakes every waiting producer with "no answer".
  void FailAll();

 private:
  enum : uint32_t { kFree, kFilling, kPending, kTaken };
  struct alignas(64) Slot {
    std::atomic<uint32_t> state{kFree};
    std::atomic<uint32_t> done{0};  // futex word: 0 waiting, 1 completed, 2 failed
    uint32_t page = 0;
    uint32_t flags = 0;
  };
  Slot slots_[kSlots];
  std::atomic<Notifier> notifier_{nullptr};
  std::atomic<void*> notifierArg_{nullptr};
};

}  // namespace dsm
