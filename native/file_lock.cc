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

}  // namespace dsm
