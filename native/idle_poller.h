// A thread that keeps this process's CPU awake while the app waits for an answer due within
// microseconds (a barrier's release), by spinning at idle priority.
//
// Why: on a virtual machine whose idle vCPUs halt at once (guest halt polling off), a
// message for a thread on a halted vCPU first has the host wake that vCPU. Two threads
// bouncing a byte through pipes took ~47 µs a round trip on two idle vCPUs here and ~5 µs
// with a busy loop keeping the other vCPU awake; a barrier round pays such wake-ups on both
// nodes. MPI libraries poll for the same reason. SCHED_IDLE makes the spinning free for
// everything else: any runnable thread of normal priority takes the CPU from it at once,
// so it only ever fills time the CPU would have spent halted.
//
// Spinning is bounded: Poll(ns) spins until Stop() or for `ns` at most, then the thread
// sleeps on a futex until the next Poll. Poll and Stop take no lock the spinning thread
// could hold: a thread at idle priority is starved whenever the CPU is busy, and one
// preempted while holding a lock the app thread wants would stall the app behind it.
// A limit that is too short costs more than it saves (README, "Barriers keep the CPU
// awake": 1 ms made barrier rounds slower than no spinning at all).
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <thread>

namespace dsm {

class IdlePoller {
 public:
  IdlePoller() = default;
  ~IdlePoller();
  IdlePoller(const IdlePoller&) = delete;
  IdlePoller& operator=(const IdlePoller&) = delete;

  // Spins for `ns` nanoseconds from now at most, until Stop(). Starts the thread on first
  // use. False when it cannot spin harmlessly (the thread could not be made SCHED_IDLE, or
  // not started): then it never spins. One caller thread at a time (the app thread).
  bool Poll(uint64_t ns);
  // Ends the current spin, if any (the thread goes back to sleep).
  void Stop();

  // For tests and stats: the thread's kernel id (0 until it runs), and whether it spins now.
  pid_t tid() const { return tid_.load(std::memory_order_acquire); }
  bool spinning() const { return spinning_.load(std::memory_order_acquire); }

 private:
  void Run();

  std::thread thread_;
  enum class State { kNotStarted, kReady, kUnusable } state_ = State::kNotStarted;
  // Bumped by every Poll and Stop (and the destructor): the futex word the thread sleeps
  // on, and a spin ends as soon as it changes.
  std::atomic<uint32_t> generation_{0};
  // The end of the spin asked for (CLOCK_MONOTONIC ns); 0: none (stored before the bump).
  std::atomic<uint64_t> deadline_{0};
  std::atomic<bool> quit_{false};
  std::atomic<bool> spinning_{false};
  std::atomic<pid_t> tid_{0};
};

}  // namespace dsm
