#include "request_ring.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>

namespace dsm {

// How long a faulting thread polls for its answer before sleeping.
static constexpr long kPollNs = 300000;

static long Futex(std::atomic<uint32_t>* word, int op, uint32_t val) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, nullptr, nullptr, 0);
}

bool RequestRing::PostAndWait(uint32_t page, uint32_t flags, uint32_t reqId, Arrived arrived, const void* arg,
                              bool* withdrawn) {
  const uint32_t slot = Claim();
  if (slot == kNoSlot || !Publish(slot, page, flags, reqId)) return false;
  return Wait(slot, arrived, arg, withdrawn);
}

uint32_t RequestRing::Claim() {
  for (;;) {
    if (!HasConsumer()) return kNoSlot;
    for (uint32_t i = 0; i < kSlots; i++) {
      uint32_t expected = kFree;
      if (slots_[i].state.compare_exchange_strong(expected, kFilling, std::memory_order_acquire)) return i;
    }
    sched_yield();  // 64 threads faulting at once: wait for a slot
  }
}

bool RequestRing::Publish(uint32_t slot, uint32_t page, uint32_t flags, uint32_t reqId) {
  Slot* s = &slots_[slot];
  s->page = page;
  s->flags = flags;
  s->reqId = reqId;
  s->done.store(0, std::memory_order_relaxed);
  s->state.store(kPending, std::memory_order_seq_cst);
  if (notifier_.Send()) return true;
  // The consumer is gone. FailAll removes the wake-up before it looks at the slots, so it
  // either saw this slot pending (and took it to fail it: wait for that answer) or
  // missed it, and then this producer withdraws the slot itself.
  uint32_t expected = kPending;
  if (s->state.compare_exchange_strong(expected, kFree, std::memory_order_acq_rel)) return false;
  return true;
}

bool RequestRing::Wait(uint32_t slot, Arrived arrived, const void* arg, bool* withdrawn) {
  Slot* s = &slots_[slot];
  uint32_t d = 0;
  // A remote fetch takes a network round trip, but waking a thread from a futex costs tens
  // of microseconds on a virtual machine: poll for a while first, yielding the CPU to
  // whatever else is runnable (the service thread among them) at each turn.
  timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);  // async-signal-safe (POSIX)
  for (;;) {
    if ((d = s->done.load(std::memory_order_acquire)) != 0) break;
    if (arrived && arrived(arg, s->page)) {
      // Answered before the consumer took the slot: withdraw it (nothing is left to do
      // for the consumer). Taken meanwhile: its answer comes, as usual.
      uint32_t expected = kPending;
      if (s->state.compare_exchange_strong(expected, kFree, std::memory_order_acq_rel)) {
        if (withdrawn) *withdrawn = true;
        return true;
      }
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) > kPollNs) break;
    sched_yield();
  }
  while ((d = s->done.load(std::memory_order_acquire)) == 0) {
    // EINTR (another signal) and EAGAIN (already completed) both just re-check the word.
    Futex(&s->done, FUTEX_WAIT_PRIVATE, 0);
  }
  s->state.store(kFree, std::memory_order_release);
  return d == 1;
}

uint32_t RequestRing::Take(Request* out, uint32_t max) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < kSlots && n < max; i++) {
    uint32_t expected = kPending;
    if (slots_[i].state.compare_exchange_strong(expected, kTaken, std::memory_order_acquire)) {
      out[n++] = Request{TakeTurn(i), slots_[i].page, slots_[i].flags, slots_[i].reqId};
    }
  }
  return n;
}

void RequestRing::Complete(uint32_t ticket) {
  Slot& s = slots_[ticket & (kSlots - 1)];
  // Stale (answered, or the slot taken again since) or foreign: nobody to wake. Between this
  // check and the store the waiter may still be answered by another thread and its slot
  // reused: the new request is then woken early, and its thread looks at the page again and
  // asks again (Dsm::ResolveFault loops), so a stray wake-up costs a round, never an answer.
  if (s.state.load(std::memory_order_acquire) != kTaken || s.turn.load(std::memory_order_acquire) != ticket >> kSlotBits) return;
  s.done.store(1, std::memory_order_release);
  Futex(&s.done, FUTEX_WAKE_PRIVATE, INT_MAX);
}

uint32_t RequestRing::CompleteFlagged(uint32_t flag) {
  uint32_t n = 0;
  for (auto& s : slots_) {
    if (s.state.load(std::memory_order_acquire) != kTaken || !(s.flags & flag)) continue;
    uint32_t waiting = 0;
    if (!s.done.compare_exchange_strong(waiting, 1, std::memory_order_acq_rel)) continue;
    Futex(&s.done, FUTEX_WAKE_PRIVATE, INT_MAX);
    n++;
  }
  return n;
}

void RequestRing::FailAll() {
  notifier_.Set(nullptr, nullptr);
  for (auto& s : slots_) {
    // A pending slot is taken first, so its producer cannot withdraw it meanwhile (and a
    // later producer reuse it) while it is being failed.
    uint32_t st = kPending;
    if (s.state.compare_exchange_strong(st, kTaken, std::memory_order_seq_cst)) st = kTaken;
    // Only unanswered slots fail: one completed just before keeps its answer.
    uint32_t waiting = 0;
    if (st == kTaken && s.done.compare_exchange_strong(waiting, 2, std::memory_order_acq_rel)) {
      Futex(&s.done, FUTEX_WAKE_PRIVATE, INT_MAX);
    }
  }
}

}  // namespace dsm
