// Counters kept by the native core. Relaxed atomics: they are figures, not synchronisation.
// The order here is the order of the BigUint64Array TypeScript reads (lib/native.ts).
#pragma once
#include <atomic>
#include <cstdint>

namespace dsm {

enum Counter : unsigned {
  kReadFaults,          // read faults resolved in the handler (read tracking)
  kWriteFaults,         // write faults resolved in the handler (shadow on write)
  kServiceFaults,       // faults handed to the service thread
  kViolations,          // writes outside a transaction (rolled back)
  kProtectionResets,    // whole-region revokes after mprotect ENOMEM
  kShadowRestores,      // pages copied back from shadows on abort or violation
  kBegins,
  kCommits,
  kAborts,
  kInstalls,            // pages installed by the service thread
  kInvalidations,       // pages invalidated by the service thread
  kUpdates,             // pages brought to a remote commit's version by applying its diff
  kWriteAhead,          // read faults in a transaction granted write access at once (the page is usually written)
  kWriteAheadUnused,    // of those, pages the transaction only read
  kFaultsAnsweredByChannel,  // faults a data channel answered without the service (its reader woke them, or they saw the page arrive)
  kRequestsSentByFault,      // page requests the faulting thread sent itself (fault_routes.h)
  kServedByChannel,          // page requests a data channel's owner end answered itself (ServeCommitted)
  kLeaseAlarms,              // lease alarms that fenced sequential and migratory pages on the app thread (lease_alarm.h)
  kRefusedFaults,            // faults of a doomed run given scratch memory while nothing could be fetched for a transaction (Dsm::RefuseRunFaults)
  kCounterCount
};

// The names TypeScript reads the counters by (lib/native.ts Counter), in order; exported
// with the addon's constants and checked when it loads.
inline constexpr const char* kCounterNames[] = {
    "readFaults", "writeFaults", "serviceFaults", "violations", "protectionResets", "shadowRestores",
    "begins",     "commits",     "aborts",        "installs",   "invalidations", "updates",
    "writeAhead", "writeAheadUnused", "answeredByChannel", "sentByFault", "servedByChannel",
    "leaseAlarms", "refusedFaults",
};
static_assert(sizeof(kCounterNames) / sizeof(kCounterNames[0]) == kCounterCount, "a name for every counter");

struct Stats {
  std::atomic<uint64_t> c[kCounterCount];
  void Inc(Counter k, uint64_t n = 1) { c[k].fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get(Counter k) const { return c[k].load(std::memory_order_relaxed); }
  void Reset() {
    for (auto& x : c) x.store(0, std::memory_order_relaxed);
  }
};

static_assert(sizeof(std::atomic<uint64_t>) == 8, "stats are exposed as a BigUint64Array");

}  // namespace dsm
