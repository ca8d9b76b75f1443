// Stopping a doomed transaction that never returns ("zombie"). JavaScript is memory-safe,
// so a transaction reading a mix of versions can only throw or loop; the loop is stopped by
// asking V8 to interrupt the app thread, and terminating only if, once there, the running
// transaction is still the doomed one. The runner below is the only place such a
// termination can surface, and it cancels it.
#pragma once
#include <napi.h>

namespace dsm {
class Dsm;

namespace app_interrupt {

// App thread, once: remembers the app isolate and the Dsm.
void Bind(Dsm* d);
void Unbind();
// Any thread: interrupts the app thread if it is inside a doomed transaction.
void Request();

// What RunTransaction's status says.
enum RunStatus : uint32_t { kReturned = 0, kThrew = 1, kTerminated = 2 };

// Runs begin, fn(tx), end as one native call, so that a termination requested by Request()
// can only happen inside it. Returns [status (RunStatus), valueOrError, writes];
// kTerminated: doomed and interrupted.
Napi::Value RunTransaction(const Napi::CallbackInfo& info, Dsm* d);

}  // namespace app_interrupt
}  // namespace dsm
