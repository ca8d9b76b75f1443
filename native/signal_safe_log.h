// Formats a message into a fixed buffer and writes it to stderr with write(2): usable
// inside a signal handler, where stdio and allocation are not.
#pragma once
#include <errno.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace dsm {

class SignalSafeLog {
 public:
  SignalSafeLog& Put(const char* s) {
    while (*s && n_ < sizeof buf_) buf_[n_++] = *s++;
    return *this;
  }
  SignalSafeLog& Num(uint64_t v) {
    char tmp[24];
    int i = 0;
    do {
      tmp[i++] = char('0' + v % 10);
      v /= 10;
    } while (v);
    while (i && n_ < sizeof buf_) buf_[n_++] = tmp[--i];
    return *this;
  }
  SignalSafeLog& Hex(uintptr_t v) {
    Put("0x");
    char tmp[20];
    int i = 0;
    do {
      tmp[i++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v);
    while (i && n_ < sizeof buf_) buf_[n_++] = tmp[--i];
    return *this;
  }
  // "ENOMEM, errno 12": strerror() is not async-signal-safe (it may format into a
  // per-thread buffer and translate through the locale), so the common names are spelled
  // here and any other error is given by number.
  SignalSafeLog& Errno(int e) {
    const char* name = nullptr;
    switch (e) {
      case EPERM: name = "EPERM"; break;
      case EINTR: name = "EINTR"; break;
      case EAGAIN: name = "EAGAIN"; break;
      case ENOMEM: name = "ENOMEM"; break;
      case EACCES: name = "EACCES"; break;
      case EFAULT: name = "EFAULT"; break;
      case EBUSY: name = "EBUSY"; break;
      case EINVAL: name = "EINVAL"; break;
      case ENFILE: name = "ENFILE"; break;
      case EMFILE: name = "EMFILE"; break;
      case ENOSPC: name = "ENOSPC"; break;
      default: break;
    }
    if (name) Put(name).Put(", ");
    return Put("errno ").Num(uint64_t(e));
  }
  void Flush() {
    size_t off = 0;
    while (off < n_) {
      ssize_t w = write(2, buf_ + off, n_ - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    n_ = 0;
  }

 private:
  char buf_[512];
  size_t n_ = 0;
};

}  // namespace dsm
