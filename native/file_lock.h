// An exclusive lock on a file that the kernel drops when the holder's descriptor closes,
// which includes every way a process dies (SIGKILL too): a page store's single-owner rule
// needs that, where a pid written into a file goes stale, stays "alive" as an unreaped
// zombie, and is reused after a reboot.
#pragma once
#include <string>

namespace dsm {

struct FileLockResult {
  // The descriptor holding the lock (close it to release), or -1.
  int fd = -1;
  // True when another open file description holds the lock (another process, or another
  // open of the same file here).
  bool held = false;
  // errno of a failure other than `held` (0 when none), and what failed.
  int error = 0;
  std::string what;
};

// Opens (creating it, mode 0644, close-on-exec) and flock(LOCK_EX | LOCK_NB)s `path`.
FileLockResult TryLockFile(const char* path);

// Empties the locked file (it names no owner then) and closes `fd`, which releases the lock.
// Returns 0 or an errno.
int UnlockFile(int fd);

}  // namespace dsm
