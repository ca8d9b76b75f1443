// Passing a SIGSEGV/SIGBUS we do not handle on to the handler installed before ours (V8's
// WebAssembly trap handler, Node's, or the default action). Async-signal-safe.
#pragma once
#include <signal.h>

namespace dsm {

inline void ChainSignal(const struct sigaction& prev, int sig, siginfo_t* info, void* ctx) {
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) {
      prev.sa_sigaction(sig, info, ctx);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
    return;
  }
  // Default action: uninstall ourselves for this signal and return; the faulting
  // instruction runs again and the kernel applies the default (a crash, as it should).
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
}

}  // namespace dsm
