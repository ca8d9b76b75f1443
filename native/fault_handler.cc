#include "fault_handler.h"

#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>

#include "dsm.h"
#include "signal_chain.h"
#include "signal_safe_log.h"

namespace dsm {
namespace fault_handler {
namespace {

std::atomic<Dsm*> g_dsm{nullptr};
struct sigaction g_prevSegv, g_prevBus;
bool g_installed = false;
std::mutex g_installMutex;

// Write access? On x86-64 the page-fault error code says (bit 1). On arm64 the ESR record
// in the signal frame does. Elsewhere report a read: the page is granted read first and a
// write faults a second time, which is slower but correct.
bool IsWrite(void* ctx) {
#if defined(__x86_64__)
  auto* uc = static_cast<ucontext_t*>(ctx);
  return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#elif defined(__aarch64__)
  auto* uc = static_cast<ucontext_t*>(ctx);
  auto* head = reinterpret_cast<_aarch64_ctx*>(uc->uc_mcontext.__reserved);
  while (head->magic != 0) {
    if (head->magic == ESR_MAGIC) {
      uint64_t esr = reinterpret_cast<esr_context*>(head)->esr;
      return (esr & (1u << 6)) != 0;  // WnR
    }
    head = reinterpret_cast<_aarch64_ctx*>(reinterpret_cast<char*>(head) + head->size);
  }
  return false;
#else
  (void)ctx;
  return false;
#endif
}

void Chain(int sig, siginfo_t* info, void* ctx) { ChainSignal(sig == SIGBUS ? g_prevBus : g_prevSegv, sig, info, ctx); }

void OnFault(int sig, siginfo_t* info, void* ctx) {
  const int savedErrno = errno;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);

  Dsm* d = g_dsm.load(std::memory_order_acquire);
  if (!d || !d->region().Contains(info->si_addr)) {
    Chain(sig, info, ctx);
    errno = savedErrno;
    return;
  }
  const uint32_t page = d->region().PageOf(info->si_addr);
  if (sig == SIGBUS) {
    SignalSafeLog().Put("node-dsm: fatal: SIGBUS at ").Hex(addr).Put(" in the DSM region (page ").Num(page)
        .Put("): the kernel could not back the region's memory (out of memory, or the memfd "
             "was truncated)\n").Flush();
    Chain(sig, info, ctx);
    errno = savedErrno;
    return;
  }
  if (d->IsServiceThread()) {
    // The service thread resolves faults; if it faults itself, nobody would wake it.
    SignalSafeLog().Put("node-dsm: fatal: the service thread touched the app view at ").Hex(addr)
        .Put(" (page ").Num(page)
        .Put("); the runtime must use the system view. Aborting instead of deadlocking.\n").Flush();
    abort();
  }
  d->ResolveFault(page, IsWrite(ctx));
  errno = savedErrno;
}

bool InstallLocked() {
  if (g_installed) return true;
  struct sigaction sa = {};
  sa.sa_sigaction = OnFault;
  // SA_ONSTACK: a fault caused by stack overflow still reaches the previous handler.
  // No SA_NODEFER: a fault inside the handler itself is a bug and should kill the process.
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &g_prevSegv) != 0) return false;
  if (sigaction(SIGBUS, &sa, &g_prevBus) != 0) {
    sigaction(SIGSEGV, &g_prevSegv, nullptr);
    return false;
  }
  g_installed = true;
  return true;
}

void UninstallLocked() {
  if (!g_installed || g_dsm.load()) return;
  // Only put the previous handlers back if nobody installed theirs on top of ours:
  // otherwise they chain to us and we keep chaining to ours.
  struct sigaction cur;
  if (sigaction(SIGSEGV, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == OnFault) {
    sigaction(SIGSEGV, &g_prevSegv, nullptr);
  } else {
    return;
  }
  if (sigaction(SIGBUS, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == OnFault) {
    sigaction(SIGBUS, &g_prevBus, nullptr);
  }
  g_installed = false;
}

}  // namespace

bool Attach(Dsm* d) {
  std::lock_guard<std::mutex> g(g_installMutex);
  if (!InstallLocked()) return false;
  g_dsm.store(d, std::memory_order_release);
  return true;
}

void Detach() {
  std::lock_guard<std::mutex> g(g_installMutex);
  g_dsm.store(nullptr, std::memory_order_release);
  UninstallLocked();
}

}  // namespace fault_handler
}  // namespace dsm
