// The SIGSEGV/SIGBUS handler. Faults inside the region go to Dsm::ResolveFault; all others
// go to the handler that was installed before (V8's WebAssembly trap handler, Node's, or
// the default action), so WebAssembly keeps working and real crashes still crash.
#pragma once

namespace dsm {

class Dsm;

namespace fault_handler {

// Installs the handler (once per process) and routes region faults to `d`.
// Returns false with errno set when sigaction fails.
bool Attach(Dsm* d);
// Stops routing to `d`; restores the previous handlers when ours is still the installed one.
void Detach();

}  // namespace fault_handler
}  // namespace dsm
