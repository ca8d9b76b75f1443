#include "file_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace dsm {

FileLockResult TryLockFile(const char* path) {
  FileLockResult r;
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    r.error = errno;
    r.what = "open";
    return r;
  }
  int rc;
  do rc = flock(fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc == 0) {
    r.fd = fd;
    return r;
  }
  if (errno == EWOULDBLOCK) r.held = true;
  else {
    r.error = errno;
    r.what = "flock";
  }
  close(fd);
  return r;
}

int UnlockFile(int fd) {
  int err = 0;
  if (ftruncate(fd, 0) != 0) err = errno;
  // close() releases the lock even when it reports an error; retrying it could close a
  // descriptor another thread has just been given.
  if (close(fd) != 0 && err == 0) err = errno;
  return err;
}

}  // namespace dsm
