// Hands faults that need the network from the faulting thread (inside the signal handler)
// to the service thread, and the answer back. Signal-safe on the producer side: a slot is
// claimed with a CAS, the consumer is poked through a notifier (uv_async_send in the addon,
// documented async-signal-safe), and the producer sleeps on the slot's futex word.
#pragma once
#include <atomic>
#include <cstdint>
#include <climits>

#include "wakeup.h"

namespace dsm {

struct Request {
  uint32_t ticket;  // the slot and the turn it was taken in (see Take)
  uint32_t page;
  uint32_t flags;   // kRequestWrite, kRequestSent, kRequestInRun
  uint32_t reqId;   // with kRequestSent: the id of the request the faulting thread sent
};

// kRequestSent: the faulting thread sent the page request itself (fault_routes.h).
// kRequestInRun: the fault came from inside a running transaction (Dsm::RefuseRunFaults).
enum : uint32_t { kRequestWrite = 1, kRequestSent = 2, kRequestInRun = 4 };

class RequestRing {
 public:
  static constexpr uint32_t kSlots = 64;
  using Notifier = void (*)(void* arg);

  // Installs (or with nullptr, removes) the consumer's wake-up. Not signal-safe; called
  // by the service thread when it attaches and detaches. Removing it waits for wake-ups
  // in progress, and producers that see it gone withdraw (see Publish).
  void SetNotifier(Notifier fn, void* arg) { notifier_.Set(fn, arg); }
  bool HasConsumer() const { return notifier_.armed(); }

  // Producer (signal handler): posts a request and blocks until Complete(). Returns false
  // when no consumer is attached, so the caller can report instead of sleeping forever.
  // Runs Claim, Publish and Wait, which the native tests also run one by one.
  // `arrived(arg, page)`, when given, says whether the page came meanwhile by another way
  // (a data channel's reply to a request the faulting thread sent itself, installed before
  // this slot was published): the slot is then withdrawn if the consumer has not taken it,
  // and `*withdrawn` says so.
  using Arrived = bool (*)(const void* arg, uint32_t page);
  bool PostAndWait(uint32_t page, uint32_t flags, uint32_t reqId = 0, Arrived arrived = nullptr, const void* arg = nullptr,
                   bool* withdrawn = nullptr);
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  // Claims a free slot for filling; kNoSlot when no consumer is attached.
  uint32_t Claim();
  // Fills the claimed slot, makes it visible to the consumer and wakes it. Returns false
  // when the consumer is gone (the slot is given up then; do not Wait on it).
  bool Publish(uint32_t slot, uint32_t page, uint32_t flags, uint32_t reqId = 0);
  // Blocks until the consumer answers the slot, then frees it: true completed, false failed.
  bool Wait(uint32_t slot, Arrived arrived = nullptr, const void* arg = nullptr, bool* withdrawn = nullptr);

  // Consumer: copies up to `max` pending requests into `out`, returns how many. Each comes
  // with a ticket naming its slot and the turn it was taken in, so a late answer for an
  // earlier request in the same slot wakes nobody.
  uint32_t Take(Request* out, uint32_t max);
  // Wakes the producer of the request `ticket` names, if it still waits. Any thread: the
  // service thread, or a data channel's reader answering a fault itself (CompleteTaken).
  void Complete(uint32_t ticket);
  // Wakes the producers of requests whose page `answered(page)` says is answered: taken
  // ones, and pending ones whose request the faulting thread sent itself (taken here, so the
  // service never sees them: there is nothing left for it to do). Called with the caller's
  // own lock held around `answered`; the wake-ups happen in `wake`, handed the tickets.
  template <class Answered, class Wake>
  void CompleteTaken(Answered&& answered, Wake&& wake) {
    uint32_t tickets[kSlots];
    uint32_t n = 0;
    for (uint32_t i = 0; i < kSlots; i++) {
      Slot& s = slots_[i];
      const uint32_t st = s.state.load(std::memory_order_acquire);
      if (st == kPending && (s.flags & kRequestSent) && answered(s.page)) {
        uint32_t expected = kPending;
        if (s.state.compare_exchange_strong(expected, kTaken, std::memory_order_acquire)) {
          tickets[n++] = TakeTurn(i);
          continue;
        }
      }
      if (s.state.load(std::memory_order_acquire) != kTaken || s.done.load(std::memory_order_acquire) != 0) continue;
      if (answered(s.page)) tickets[n++] = Ticket(i, s.turn.load(std::memory_order_acquire));
    }
    wake(tickets, n);
  }
  // Wakes the producers of taken, unanswered requests whose flags include `flag`. Returns
  // how many it woke. A stray wake-up of a later request in a reused slot costs that
  // request a round, as with Complete.
  uint32_t CompleteFlagged(uint32_t flag);
  // Consumer, on detach: removes the wake-up and wakes every waiting producer with "no
  // answer"; producers still filling a slot withdraw it when they publish.
  void FailAll();

 private:
  enum : uint32_t { kFree, kFilling, kPending, kTaken };
  static constexpr uint32_t kSlotBits = 6;
  static_assert(kSlots == 1u << kSlotBits, "a ticket keeps the slot in its low bits");
  static uint32_t Ticket(uint32_t slot, uint32_t turn) { return turn << kSlotBits | slot; }
  // A slot just taken: its next turn, and the ticket that names it.
  uint32_t TakeTurn(uint32_t slot) {
    const uint32_t turn = (slots_[slot].turn.load(std::memory_order_relaxed) + 1) & (UINT32_MAX >> kSlotBits);
    slots_[slot].turn.store(turn, std::memory_order_release);
    return Ticket(slot, turn);
  }
  struct alignas(64) Slot {
    std::atomic<uint32_t> state{kFree};
    std::atomic<uint32_t> done{0};  // futex word: 0 waiting, 1 completed, 2 failed
    std::atomic<uint32_t> turn{0};  // counts the slot's takes (wrapping): a ticket's high bits
    uint32_t page = 0;
    uint32_t flags = 0;
    uint32_t reqId = 0;
  };
  Slot slots_[kSlots];
  Wakeup notifier_;
};

}  // namespace dsm
