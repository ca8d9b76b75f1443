#include "fault_floor.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "fault_handler.h"

namespace dsm {

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
  fault_handler::SetCalibrationRange(m, pages * ps);
  std::vector<double> per;
  for (uint32_t r = 0; r < rounds; r++) {
    mprotect(m, pages * ps, PROT_NONE);
    uint64_t t0 = NowNs();
    for (uint32_t i = 0; i < pages; i++) p[i * ps] = 2;
    per.push_back(double(NowNs() - t0) / pages);
  }
  fault_handler::SetCalibrationRange(nullptr, 0);
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
