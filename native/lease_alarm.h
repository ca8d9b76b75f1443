// The lease alarm: sequential and migratory pages lose their access the moment this node's
// commit lease runs out, on the app thread itself.
//
// The service thread fences them (Dsm::Fence) when it sees the lease run out, but a process
// resumed from SIGSTOP (or descheduled past its lease) runs its app thread at once, and that
// thread touches such pages with no fault at all: it read and wrote them until the service
// thread had run, after the others may have taken them over. So a POSIX timer, armed at the
// lease's end on every renewal, sends a signal to the thread that opened the region; the
// kernel runs a pending handler before the thread's next instruction in user space, also
// right after a SIGCONT, and the handler fences (Dsm::FenceOnAlarm). Other threads that
// touch the region (rare: the app thread is the one that opened it) are fenced by the
// service as before.
#pragma once
#include <cstdint>

namespace dsm {

class Dsm;

namespace lease_alarm {

// Installs the handler (once per process) and targets the calling thread with a timer that
// fences `d`. Returns false with errno set when no real-time signal is free or the timer
// cannot be made.
bool Attach(Dsm* d);
// Any thread: the lease runs until `untilMs` (CLOCK_MONOTONIC ms). A deadline not ahead (0:
// already out) or INT64_MAX (for good) leaves the alarm as it is.
void Arm(int64_t untilMs);
// Deletes the timer. The handler stays installed: a signal already queued must not take the
// default action of a real-time signal, which ends the process.
void Detach();

}  // namespace lease_alarm
}  // namespace dsm
