// The SIGSEGV/SIGBUS handler. Faults inside the region go to Dsm::ResolveFault; all others
// go to the handler that was installed before (V8's WebAssembly trap handler, Node's, or
// the default action), so WebAssembly keeps working and real crashes still crash.
#pragma once
#include <cstddef>

namespace dsm {

class Dsm;

namespace fault_handler {

// Installs the handler (once per process) and routes region faults to `d`.
// Returns false with errno set when sigaction fails.
bool Attach(Dsm* d);
// Stops routing to `d`; restores the previous handlers when ours is still the installed one.
void Detach();

// Calibration: faults inside [p, p+len) are answered by granting read-write to the faulting
// page and returning, nothing else. Measures the floor (SIGSEGV + mprotect + return) through
// this very handler, in the same process and run as the figures compared with it.
void SetCalibrationRange(void* p, size_t len);

}  // namespace fault_handler
}  // namespace dsm
