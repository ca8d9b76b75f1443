// The per-process DSM instance: the region, its page table, shadows, protections and the
// request ring, and the operations on them. Plain C++ (no JavaScript, no libuv): the addon
// binds it, the native tests drive it directly.
//
// Threads: the app thread runs transactions and faults; the service thread installs and
// invalidates pages. Every page-state transition happens under `lock_` (a spin lock, as
// the fault handler takes it), and no holder ever waits for another thread.
#pragma once
#include <pthread.h>

#include <atomic>
#include <memory>
#include <functional>
#include <mutex>
#include <cstdint>
#include <vector>

#include "commit_channel.h"
#include "data_channel.h"
#include "fault_routes.h"
#include "page_table.h"
#include "protections.h"
#include "region.h"
#include "request_ring.h"
#include "shadow_pages.h"
#include "spin_lock.h"
#include "stats.h"

namespace dsm {

struct Options {
  uintptr_t base = 0;
  size_t size = 0;
  unsigned pageShift = 12;
  // Pages start valid (zero-filled, never written). A node joining a running cluster starts
  // with every page invalid instead and fetches them.
  bool startInvalid = false;
};

class Dsm {
 public:
  Dsm() = default;
  ~Dsm();
  Dsm(const Dsm&) = delete;
  Dsm& operator=(const Dsm&) = delete;

  bool Open(const Options& o, RegionError* err);
  void Close();

  // ---- fault path (signal handler; any thread but the service thread) ----
  // Resolves an access to `page` of the app view. Never returns on fatal errors: it writes
  // a message naming the cause to stderr and aborts.
  void ResolveFault(uint32_t page, bool write);
  bool IsServiceThread() const;

  // ---- transactions (app thread) ----
  void Begin();
  // Ends the running function: the pages it touched lose access (a write after it returned
  // is a violation; a read faults and is granted outside the transaction), so the next
  // Begin() has only the pages read outside a transaction to revoke. Pages granted write
  // access ahead (see ResolveFault) that were not changed count as read. Returns the write
  // count.
  uint32_t End();
  // Rolls back every page written since Begin() and forgets both sets.
  void Abort();
  // Makes the writes permanent: stamps `time` and `owner` on the written pages. With
  // `pages` and `changes`, also says what changed, for the commit record: the written pages
  // in increasing order, and per page (same order) u64 the version it replaces | u32 length
  // | a diff against that version (page_diff.h), or the whole page when a backup (see
  // SetBackups) may not hold that version. A page going whole whose diff is small carries
  // both: the length kWholeAndDiff, then the whole page, u32 the diff's length, the diff.
  // That form never leaves this node (lib/service/changes.ts gives the backups the whole
  // page and every other member the diff, so copies elsewhere are updated, not invalidated).
  static constexpr uint32_t kWholeAndDiff = 0xfffffffe;
  void Commit(uint64_t time, uint16_t owner, std::vector<uint32_t>* pages = nullptr,
              std::vector<uint8_t>* changes = nullptr);
  // The nodes that back this node's commits up (durability 'replicated'). A backup holds a
  // page's previous version if it made that version itself, or got it from one of our
  // commits since this set was last changed; for any other page a commit carries the whole
  // page, so a backup never has to fetch one.
  void SetBackups(const uint16_t* ids, uint32_t count);
  bool active() const { return active_.load(std::memory_order_acquire); }
  bool live() const { return live_.load(std::memory_order_acquire); }
  bool doomed() const { return doomed_.load(std::memory_order_acquire); }
  void Doom() { doomed_.store(true, std::memory_order_release); }
  // What doomed the live transaction first: the page and the node whose commit changed it
  // (the false-sharing monitor counts aborts by it). False when nothing did, or the cause
  // was not a commit (a lost page). Kept until the next Begin().
  bool DoomCause(uint32_t* page, uint16_t* node) const;
  std::vector<uint32_t> ReadSet();
  std::vector<uint32_t> WriteSet();
  // Rolls back writes made outside any transaction; returns how many pages were restored.
  uint32_t TakeViolations();
  bool violation() const { return violation_.load(std::memory_order_acquire); }

  // ---- service thread ----
  void SetServiceThread(pthread_t t, bool attached);
  // Installs a page fetched from a peer (see InstallPages). `data` may be null for a zero
  // page. Returns false when the page was not invalid (nothing changed).
  bool Install(uint32_t page, const uint8_t* data, uint64_t version, uint16_t owner);
  // Installs `count` fetched pages (data: count pages back to back, or null for zeros) in
  // one lock hold. Pages that are not invalid, or older than this node knows, are skipped.
  // When no transaction is live the installed pages are granted read access at once (one
  // mprotect per run): a scan outside transactions then reads fetched-ahead pages without
  // a fault each. Inside a transaction they stay unmapped, so first reads are still seen.
  // Returns how many were installed.
  uint32_t InstallPages(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count,
                        const uint8_t* data);
  // The last page a read fault granted locally (no service hop), or UINT32_MAX. Fetched
  // pages are granted on install, except one tripwire page in every kTripwireEvery, so a
  // sequential scan over them still shows the service how far it has come.
  uint32_t lastReadFault() const { return lastReadFault_.load(std::memory_order_relaxed); }
  static constexpr uint32_t kTripwireEvery = 64;
  // InstallPages with the data read in page order by `read(to, len)` (from a socket, say);
  // pages not taken are read into scratch. Returns -1 when a read fails (nothing is
  // published then) or the region is closed.
  int64_t InstallPagesFrom(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count,
                           const std::function<bool(uint8_t* to, size_t len)>& read);
  // Wakes the threads whose faults wait for one of `pages` (taken from the request ring by
  // the service) where the page is no longer invalid: a data channel's reader, having
  // installed a reply, answers them itself instead of through the service thread, which
  // still completes the fetch (ownership, counters) when it hears of the reply. Returns how
  // many it woke.
  uint32_t AnswerFaults(const uint32_t* pages, uint32_t count);
  // Serving page requests without the service (a data channel's owner end, data_channel.h).
  // The service sets what its own rules need (lib/service/page_serving.ts): how long this
  // node's commit lease runs (ms from now; INT64_MAX: for good, <= 0: not) and the time up
  // to which its commits have gone out (a page written by a later one is not served here).
  void SetServingLease(int64_t msFromNow);
  void SetServable(uint64_t time) { servable_.store(time, std::memory_order_release); }
  // Up to `max` consecutive pages from `first` that node `me` may serve from here: for each,
  // 14 bytes of meta (u32 page, u64 version, u16 owner) and its committed contents in
  // `data`. 0: none (the request is the service's to answer).
  static constexpr uint32_t kServeMax = 256;
  uint32_t ServeCommitted(uint16_t me, uint32_t first, uint32_t max, uint8_t* meta, uint8_t* data);
  // Writes a frame of `type` carrying `payload` on data channel `id` (its owner's end: a
  // page request; the owner's: DataReady). False when there is no such channel or the write failed.
  bool SendOnChannel(uint32_t id, uint8_t type, const uint8_t* payload, size_t len);
  // The page requests data channel `id`'s owner end handed to the service (22 bytes each).
  void TakeForwarded(uint32_t id, std::vector<uint8_t>* out);
  // Data channels (see data_channel.h): `fd` is owned from here on. Returns the id.
  uint32_t OpenDataChannel(int fd, const DataChannel::Config& c, DataChannel::Notifier fn, void* arg);
  void CloseDataChannel(uint32_t id);
  // Faults on `owner`'s pages send their requests over data channel `id` (fault_routes.h),
  // until the channel closes. False when there is no such channel.
  bool RouteFaults(uint32_t owner, uint32_t id, const FaultRoutes::Wire& w);
  void CloseDataChannels();
  void TakeDataDone(std::vector<DataDone>* out);
  // Applies another node's commit (`changes` as Commit() makes them): a page held valid at
  // the version a change replaces takes the change and the new version (update); any other
  // page is invalidated. A change to a page the live transaction read or wrote dooms it; its
  // shadow takes the change, so a rollback restores the new version. Returns -1 when
  // `changes` is malformed (nothing applied), else 1 when the live transaction was doomed.
  // `changes` may be empty: every page is invalidated; so is a page whose change has the
  // length kNotCarried (and no bytes): the committer sent it only to its backups.
  static constexpr uint32_t kNotCarried = 0xffffffff;
  int ApplyCommit(uint64_t time, uint16_t owner, const uint32_t* pages, uint32_t count, const uint8_t* changes,
                  size_t changesLen);
  // Marks a page stale after a remote commit. Returns true when that doomed the live
  // transaction (it had read or written the page).
  bool Invalidate(uint32_t page, uint64_t version, uint16_t owner);
  // Invalidate() of `count` pages in one lock hold (a joiner taking the cluster's page
  // table, a page server founding from its store: 65,536 calls cost ~30 ms, one ~2 ms).
  // Returns whether any dooms the live transaction.
  bool InvalidatePages(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners, uint32_t count);
  // The last committed contents of a page (shadow if the live transaction wrote it).
  void CopyCommitted(uint32_t page, uint8_t* out);
  // CopyCommitted of `count` pages back to back, in one lock hold.
  void CopyCommittedPages(const uint32_t* pages, uint32_t count, uint8_t* out);
  // The contents the pages hold now (the live transaction's writes included), back to back.
  void CopyCurrentPages(const uint32_t* pages, uint32_t count, uint8_t* out);

  // A page whose only up-to-date copy is gone (its holders died): dooms the live
  // transaction and is reported by the next DSM call on the app thread.
  void MarkLost(uint32_t page);
  // The lost page number, or -1; taking it clears it.
  int64_t TakeLost() { return lost_.exchange(-1, std::memory_order_acq_rel); }

  // ---- consistency models (models.cc; DESIGN.md "Consistency models") ----
  // App thread, inside a transaction: `count` pages from `first` take `model` (PageModel,
  // kTransactional for pages freed) when the transaction commits; an abort forgets it.
  void DeclareModel(uint32_t first, uint32_t count, uint8_t model);
  // tx.discardLost of a lost sequential or migratory page: if its owner is still `lostOwner`,
  // declares its model as DeclareModel does and zeroes the copy here, if any; false if not.
  bool DeclareLost(uint32_t page, uint8_t model, uint16_t lostOwner);
  struct ModelChange {
    uint64_t time;  // of the commit that made it
    uint32_t first, count;
    uint8_t model;
  };
  // Service thread: the model changes of this node's commits up to `time`, oldest first;
  // they travel in the commit to every member.
  void TakeModelChanges(uint64_t time, std::vector<ModelChange>* out);
  // App thread, inside a transaction: the heap handed out pages [first, first + count). If
  // any is outside transactional consistency here, another node's allocation of them has
  // arrived and this run read the heap before it did: the run is doomed. Returns whether
  // it is.
  bool ClaimFresh(uint32_t first, uint32_t count);
  // Sets the model of pages another node's commit allocated (`owner`) or freed. Returns
  // true when that doomed the live transaction (it allocated or touched one of them).
  bool SetModel(uint32_t first, uint32_t count, uint8_t model, uint16_t owner);
  // Sequential and migratory pages, service thread (the model byte keeps its model). The owner gives a copy of `page` (into `out`): it keeps
  // a read-only copy (`drop` false, a reader's request) or none (`drop`, ownership goes to
  // `newOwner`). False when this node holds no copy.
  bool ShareSequential(uint32_t page, uint8_t* out, bool drop, uint16_t newOwner);
  // A copy arrived from the owner (`data`; null: zeros, or the copy held here): read-only, or
  // with `own` this node is the owner and no other copy exists.
  void InstallSequential(uint32_t page, const uint8_t* data, bool own, uint16_t owner);
  // Another node takes ownership: this node's copy goes.
  void DropSequential(uint32_t page, uint16_t newOwner);
  // The owner has invalidated every other copy: its writes need no message any more.
  void OwnSequential(uint32_t page);
  // A local page of another node was touched here: the toucher reads zeros it must not rely
  // on (the page is never sent), the live transaction is doomed and the next DSM call on the
  // app thread reports it (TakeLocalTouched).
  void RefuseLocal(uint32_t page);
  int64_t TakeLocalTouched() { return localTouched_.exchange(-1, std::memory_order_acq_rel); }
  // Service: this node's lease ran out (on) or is back (off). While fenced, every sequential
  // and migratory page here loses its access and each touch asks the service, which holds
  // it until the lease is back or the node has joined again: a node cut off or stalled past
  // the failure detector must not read or write pages the others may have taken over.
  // Returns how many pages lost their access.
  uint32_t Fence(bool on);
  bool fenced() const { return fenced_.load(std::memory_order_acquire); }
  // Signal handler on the app thread (lease_alarm.h): the lease ran out, unless it was
  // renewed since the alarm was set. Fences as Fence(true) does; async-signal-safe.
  void FenceOnAlarm();
  // Service: this node cannot fetch for a transaction (no quorum, or removed and joining
  // again: every commit would be refused). On: the live transaction is doomed, and faults
  // of a doomed run on pages not here get private scratch memory instead of waiting (as
  // its touches of non-transactional pages do), so the run ends and the program hears
  // ERR_DSM_PARTITIONED rather than waiting in a fault until the cut heals. Faults waiting
  // now are woken. Faults outside transactions still wait. Returns how many were woken.
  uint32_t RefuseRunFaults(bool on);
  // CLOCK_MONOTONIC ms until which the lease runs (SetServingLease); 0: not, INT64_MAX: for good.
  int64_t servingUntilMs() const { return serveUntilMs_.load(std::memory_order_acquire); }
  static int64_t MonotonicMs();

  Region& region() { return region_; }
  CommitChannel& channel() { return channel_; }
  PageTable& pages() { return pt_; }
  RequestRing& ring() { return ring_; }
  FaultRoutes& routes() { return routes_; }
  Stats& stats() { return stats_; }
  uint32_t grantedCount() const { return prot_.grantedCount(); }

 private:
  [[noreturn]] void Fatal(const char* what, uint32_t page, int err);
  // Installs claim the pages they will fill (false: the region is closed), then publish or
  // release them.
  bool ClaimInvalid(const uint32_t* pages, const uint64_t* versions, uint32_t count, std::vector<uint32_t>* take);
  void Release(const uint32_t* pages, const std::vector<uint32_t>& take);
  uint32_t Publish(const uint32_t* pages, const uint64_t* versions, const uint16_t* owners,
                   const std::vector<uint32_t>& take);
  void RestoreShadows(ShadowPages& s);
  void CopyCommittedLocked(const uint32_t* pages, uint32_t count, uint8_t* out);
  // A page granted write access ahead (writeAhead_) that still equals its shadow: a read so far. Lock held.
  bool AheadUnchanged(uint32_t page) const;
  bool Lock() { return lock_.Lock(); }
  // Invalidate() with the lock held.
  bool InvalidateLocked(uint32_t page, uint64_t version, uint16_t owner);
  void SetModelLocked(uint32_t first, uint32_t count, uint8_t model, uint16_t owner, bool mine);
  // Dooms the live transaction (lock held), remembering the first cause.
  void DoomLocked(uint32_t page, uint16_t node);
  // Takes the access of every sequential and migratory page here (lock held, or this thread
  // interrupted its holder). Returns how many lost it.
  uint32_t FenceLocked();
  // Puts private scratch memory, readable and writable, under the app view of `page` for
  // the rest of the live run (lock held). False when it could not (out of memory areas).
  bool ScratchLocked(uint32_t page);
  // Maps the live transaction's scratch pages back (lock held).
  void DropScratchLocked();

  Region region_;
  // Pages an install is filling (under lock_): another install skips them, so two never
  // interleave their copies into one page; and how many installs are running (Close waits).
  MappedArray<uint8_t> claimed_;
  // Per page: the version our backups got from our last commit of it (0: none since the
  // backups changed). Under lock_.
  MappedArray<uint64_t> backed_;
  static constexpr uint32_t kMaxBackups = 16;
  uint16_t backups_[kMaxBackups] = {};
  uint32_t backupCount_ = 0;
  std::atomic<uint32_t> installsInFlight_{0};
  bool closed_ = false;
  std::mutex channelsMu_;
  std::vector<std::unique_ptr<DataChannel>> channels_;
  uint32_t nextChannel_ = 1;
  // ServeCommitted's rules (see SetServingLease): CLOCK_MONOTONIC ms, and a global time.
  std::atomic<int64_t> serveUntilMs_{0};
  std::atomic<uint64_t> servable_{0};
  PageTable pt_;
  Protections prot_;
  ShadowPages txShadows_;    // first-write copies of the running transaction
  ShadowPages violShadows_;  // first-write copies of writes outside a transaction
  PageSet readSet_;
  // Write ahead. A transaction that reads a page this node wrote the last time it committed
  // it gets write access on the read fault (shadow taken), saving the write fault that
  // read-modify-write code takes next; End() compares such pages with their shadows and
  // turns the unchanged ones back into reads. Per page: written last (app thread, under
  // lock_); and the pages granted so in the live transaction.
  MappedArray<uint8_t> writtenLast_;
  PageSet writeAhead_;
  // Pages outside transactional consistency that the live transaction touched after it was
  // doomed: private scratch memory under the app view until the run ends (ResolveFault).
  PageSet scratch_;
  // Blocks the heap handed out to the live transaction (any model): another node's model
  // change for one dooms it, as for a block it declared (SetModel). App and service thread,
  // under modelsMu_.
  std::vector<std::pair<uint32_t, uint32_t>> fresh_;
  RequestRing ring_;
  FaultRoutes routes_;
  // The page of the last fault that needed the service: the next page faulting after it is
  // a scan, left to the service and its read-ahead (fault_routes.h).
  std::atomic<uint32_t> lastServiceFault_{UINT32_MAX};
  CommitChannel channel_;
  std::atomic<int64_t> lost_{-1};
  std::atomic<int64_t> localTouched_{-1};
  std::atomic<bool> refuseRunFaults_{false};  // RefuseRunFaults()
  std::atomic<bool> fenced_{false};  // Fence(): sequential and migratory pages wait for the lease
  std::atomic<uint32_t> fencedByAlarm_{0};  // pages FenceOnAlarm took, not yet counted by Fence()
  // Model declarations of the live transaction, and of commits made here not yet taken by
  // the service (app thread and service thread; never the fault handler).
  std::mutex modelsMu_;
  std::vector<ModelChange> declared_;
  std::vector<ModelChange> committedModels_;
  std::atomic<uint32_t> lastReadFault_{UINT32_MAX};
  Stats stats_{};
  SpinLock lock_;
  std::atomic<bool> active_{false};  // the transaction function is running
  std::atomic<bool> live_{false};    // begun and neither committed nor aborted
  std::atomic<bool> doomed_{false};
  // kNoCause, or page << 16 | node of the commit that doomed the live transaction first.
  static constexpr uint64_t kNoCause = ~uint64_t(0);
  std::atomic<uint64_t> doomCause_{kNoCause};
  std::atomic<bool> violation_{false};
  std::atomic<bool> hasService_{false};
  pthread_t service_{};
};

}  // namespace dsm
