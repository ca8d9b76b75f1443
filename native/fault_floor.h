// Native measurements of the floors the benchmarks compare against, taken in the same
// process and run as the figures they anchor.
#pragma once
#include <cstdint>

namespace dsm {

// Median nanoseconds of one SIGSEGV + mprotect + return, through a minimal handler
// installed for the measurement (the DSM's handler does this and its own work), over
// `pages` fresh pages, repeated `rounds` times. Not thread-safe: one measurement at a time.
double MeasureFaultFloorNs(uint32_t pages, uint32_t rounds);
// Median nanoseconds of one single-page mprotect.
double MeasureMprotectNs(uint32_t pages, uint32_t rounds);
// Median nanoseconds of one malloc(size), over `count` live allocations, `rounds` times.
double MeasureMallocNs(uint32_t size, uint32_t count, uint32_t rounds);

}  // namespace dsm
