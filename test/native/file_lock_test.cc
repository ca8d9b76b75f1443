// Native tests of the page store's owner lock (native/file_lock.cc): one holder at a time,
// and a holder killed with SIGKILL gives it up (the kernel closes its descriptors) without
// anyone cleaning up. Real processes, real signals.
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "../../native/file_lock.h"
#include "check.h"

using namespace dsm;

namespace {

// A lock file in a directory of its own, both removed when the test ends.
struct TempLockPath {
  std::string dir;
  std::string file;
  TempLockPath() {
    char tmpl[] = "/tmp/dsm-lock-XXXXXX";
    if (mkdtemp(tmpl)) {
      dir = tmpl;
      file = dir + "/owner.pid";
    }
  }
  ~TempLockPath() {
    if (dir.empty()) return;
    unlink(file.c_str());
    rmdir(dir.c_str());
  }
  const char* c_str() const { return file.c_str(); }
};

}  // namespace

TEST(file_lock_has_one_holder_and_is_released_emptied_by_unlock) {
  const TempLockPath p;
  FileLockResult a = TryLockFile(p.c_str());
  CHECK(a.fd >= 0 && !a.held && a.error == 0);
  CHECK(write(a.fd, "1234", 4) == 4);
  // A second open of the same file is another holder, even in this process.
  FileLockResult b = TryLockFile(p.c_str());
  CHECK(b.fd == -1 && b.held && b.error == 0);
  CHECK(UnlockFile(a.fd) == 0);
  struct stat st;
  CHECK(stat(p.c_str(), &st) == 0 && st.st_size == 0);
  FileLockResult c = TryLockFile(p.c_str());
  CHECK(c.fd >= 0 && !c.held);
  CHECK(UnlockFile(c.fd) == 0);
}

TEST(file_lock_of_a_process_killed_with_sigkill_is_free) {
  const TempLockPath p;
  int ready[2];
  CHECK(pipe(ready) == 0);
  const pid_t child = fork();
  if (child == 0) {
    FileLockResult r = TryLockFile(p.c_str());
    const char ok = r.fd >= 0 ? 'y' : 'n';
    if (write(ready[1], &ok, 1) != 1) _exit(2);
    for (;;) pause();
  }
  char got = 0;
  CHECK(read(ready[0], &got, 1) == 1 && got == 'y');
  FileLockResult while_alive = TryLockFile(p.c_str());
  CHECK(while_alive.held && while_alive.fd == -1);
  kill(child, SIGKILL);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
  FileLockResult after = TryLockFile(p.c_str());
  CHECK(after.fd >= 0 && !after.held);
  close(after.fd);
  close(ready[0]);
  close(ready[1]);
}

TEST(file_lock_reports_other_failures) {
  FileLockResult r = TryLockFile("/nonexistent-dsm-dir/owner.pid");
  CHECK(r.fd == -1 && !r.held && r.error == ENOENT && r.what == "open");
}
