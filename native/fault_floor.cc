#include "fault_floor.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "signal_chain.h"

namespace dsm {
namespace {

// The calibration handler: installed over whatever handler is in place (the DSM's among
// them) for the duration of one measurement. Faults in the calibration pages are answered
// by granting the page and returning, the least any fault handler does; all others go on
// to the handler below, so a DSM fault on another thread meanwhile is still resolved.
std::atomic<uintptr_t> g_begin{0}, g_end{0};
struct sigaction g_prev;
size_t g_pageSize = 4096;

void OnCalibrationFault(int sig, siginfo_t* info, void* ctx) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  if (addr >= g_begin.load(std::memory_order_acquire) && addr < g_end.load(std::memory_order_acquire)) {
    const int savedErrno = errno;
    mprotect(reinterpret_cast<void*>(addr & ~uintptr_t(g_pageSize - 1)), g_pageSize, PROT_READ | PROT_WRITE);
    errno = savedErrno;
    return;
  }
  ChainSignal(g_prev, sig, info, ctx);
}

}  // namespace

static uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

static double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double MeasureFaultFloorNs(uint32_t pages, uint32_t rounds) {
  const size_t ps = size_t(getpagesize());
  void* m = mmap(nullptr, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1;
  auto* p = static_cast<volatile uint8_t*>(m);
  for (uint32_t i = 0; i < pages; i++) p[i * ps] = 1;  // populate: measure the fault, not the allocation
  g_pageSize = ps;
  g_end.store(uintptr_t(m) + pages * ps, std::memory_order_release);
  g_begin.store(uintptr_t(m), std::memory_order_release);
  // The same flags as the DSM's handler, so the figure is the floor under it.
  struct sigaction sa = {};
  sa.sa_sigaction = OnCalibrationFault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &g_prev) != 0) {
    munmap(m, pages * ps);
    return -1;
  }
  std::vector<double> per;
  for (uint32_t r = 0; r < rounds; r++) {
    mprotect(m, pages * ps, PROT_NONE);
    uint64_t t0 = NowNs();
    for (uint32_t i = 0; i < pages; i++) p[i * ps] = 2;
    per.push_back(double(NowNs() - t0) / pages);
  }
  sigaction(SIGSEGV, &g_prev, nullptr);
  g_begin.store(0, std::memory_order_release);
  g_end.store(0, std::memory_order_release);
  munmap(m, pages * ps);
  return Median(per);
}

double MeasureMprotectNs(uint32_t pages, uint32_t rounds) {
  const size_t ps = size_t(getpagesize());
  void* m = mmap(nullptr, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1;
  auto* base = static_cast<uint8_t*>(m);
  for (uint32_t i = 0; i < pages; i++) base[i * ps] = 1;
  std::vector<double> per;
  for (uint32_t r = 0; r < rounds; r++) {
    uint64_t t0 = NowNs();
    for (uint32_t i = 0; i < pages; i += 2) mprotect(base + i * ps, ps, (r & 1) ? PROT_READ | PROT_WRITE : PROT_READ);
    per.push_back(double(NowNs() - t0) / ((pages + 1) / 2));
  }
  munmap(m, pages * ps);
  return Median(per);
}

double MeasureMallocNs(uint32_t size, uint32_t count, uint32_t rounds) {
  // The pointers are kept (and freed after the timed loop), so the allocations are live
  // and cannot be optimised away, as a program's objects would be.
  std::vector<void*> ptrs(count);
  std::vector<double> per;
  for (uint32_t r = 0; r < rounds; r++) {
    uint64_t t0 = NowNs();
    for (uint32_t i = 0; i < count; i++) ptrs[i] = malloc(size);
    per.push_back(double(NowNs() - t0) / count);
    for (uint32_t i = 0; i < count; i++) free(ptrs[i]);
  }
  return Median(per);
}

}  // namespace dsm
