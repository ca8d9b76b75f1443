// A wake-up that other threads, signal handlers among them, send to one consumer: a
// function and its argument (uv_async_send and the handle, in the addon).
//
// The pair is published as one immutable object, so a sender never calls one pair's
// function with another pair's argument (two separate atomics could be read half old,
// half new at detach: uv_async_send(nullptr) inside the fault handler). Replacing or
// removing it waits until no sender still runs the old pair, so the caller may free what
// the old argument points to as soon as Set() returns.
//
// Senders count themselves in one of two phases, and Set() flips the phase after it has
// swapped the pair, then waits for the old phase's senders only: those that may hold the
// old pair. Senders that arrive meanwhile count in the new phase, so a stream of sends
// never keeps Set() waiting (with one shared count, senders back to back on 2 vCPUs kept
// it above zero for minutes).
#pragma once
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace dsm {

class Wakeup {
 public:
  using Fn = void (*)(void* arg);

  Wakeup() = default;
  ~Wakeup() { delete target_.load(std::memory_order_acquire); }
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Not signal-safe (allocates, locks). A null `fn` removes the wake-up.
  void Set(Fn fn, void* arg) {
    std::lock_guard<std::mutex> one(setMu_);  // one flip at a time
    const Target* next = fn ? new Target{fn, arg} : nullptr;
    const Target* old = target_.exchange(next, std::memory_order_seq_cst);
    // A sender that may hold `old` loaded it before the exchange, and counted itself in
    // the phase it saw unchanged after counting (Send), so before this flip: it is in `was`.
    // One that counts after the flip sees the new phase, and loads `next` or newer.
    const uint32_t was = phase_.fetch_xor(1, std::memory_order_seq_cst) & 1;
    // They leave within one Send(): spin a little before giving the CPU away (a yield to a
    // busy sender can cost a whole time slice).
    for (int spins = 0; senders_[was].load(std::memory_order_seq_cst) != 0; spins++) {
      if (spins >= 1000) sched_yield();
    }
    delete old;
  }

  // Signal-safe: calls the current function; false when none is set.
  bool Send() {
    uint32_t p;
    for (;;) {
      p = phase_.load(std::memory_order_seq_cst) & 1;
      senders_[p].fetch_add(1, std::memory_order_seq_cst);
      // Flipped between the two reads: a Set() may already have found this phase empty.
      if ((phase_.load(std::memory_order_seq_cst) & 1) == p) break;
      senders_[p].fetch_sub(1, std::memory_order_seq_cst);
    }
    const Target* t = target_.load(std::memory_order_seq_cst);
    if (t) t->fn(t->arg);
    senders_[p].fetch_sub(1, std::memory_order_release);
    return t != nullptr;
  }

  bool armed() const { return target_.load(std::memory_order_seq_cst) != nullptr; }

 private:
  struct Target {
    Fn fn;
    void* arg;
  };
  std::atomic<const Target*> target_{nullptr};
  std::atomic<uint32_t> phase_{0};
  std::atomic<uint32_t> senders_[2] = {};
  std::mutex setMu_;
};

}  // namespace dsm
