// A wake-up that other threads, signal handlers among them, send to one consumer: a
// function and its argument (uv_async_send and the handle, in the addon).
//
// The pair is published as one immutable object, so a sender never calls one pair's
// function with another pair's argument (two separate atomics could be read half old,
// half new at detach: uv_async_send(nullptr) inside the fault handler). Replacing or
// removing it waits until no sender still runs the old pair, so the caller may free what
// the old argument points to as soon as Set() returns.
#pragma once
#include <sched.h>

#include <atomic>
#include <cstdint>

namespace dsm {

class Wakeup {
 public:
  using Fn = void (*)(void* arg);

  Wakeup() = default;
  ~Wakeup() { delete target_.load(std::memory_order_acquire); }
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Not signal-safe (allocates). A null `fn` removes the wake-up.
  void Set(Fn fn, void* arg) {
    const Target* next = fn ? new Target{fn, arg} : nullptr;
    const Target* old = target_.exchange(next, std::memory_order_seq_cst);
    // A sender counted before the exchange may hold `old`; one counted after it sees
    // `next` (both sides are sequentially consistent).
    while (senders_.load(std::memory_order_seq_cst) != 0) sched_yield();
    delete old;
  }

  // Signal-safe: calls the current function; false when none is set.
  bool Send() {
    senders_.fetch_add(1, std::memory_order_seq_cst);
    const Target* t = target_.load(std::memory_order_seq_cst);
    if (t) t->fn(t->arg);
    senders_.fetch_sub(1, std::memory_order_release);
    return t != nullptr;
  }

  bool armed() const { return target_.load(std::memory_order_seq_cst) != nullptr; }

 private:
  struct Target {
    Fn fn;
    void* arg;
  };
  std::atomic<const Target*> target_{nullptr};
  std::atomic<uint32_t> senders_{0};
};

}  // namespace dsm
