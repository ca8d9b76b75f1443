// Bindings for file locks (file_lock.cc), used by the page store to keep one owner per
// directory. Argument conversion only; any thread.
#include <string.h>

#include <string>

#include "addon_calls.h"
#include "file_lock.h"

namespace dsm {
namespace addon {
namespace {

// lockFile(path): the descriptor holding an exclusive lock on `path` (unlockFile releases
// it), or -1 while another holder has it. Other failures throw.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "lockFile: path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const FileLockResult r = TryLockFile(path.c_str());
  if (r.error) throw Napi::Error::New(env, r.what + " " + path + ": " + strerror(r.error));
  return Napi::Number::New(env, r.held ? -1 : r.fd);
}

// unlockFile(fd): empties the file lockFile locked and closes `fd` (Node's fs.closeSync in
// a worker thread warns about a descriptor it did not open).
Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int err = dsm::UnlockFile(info[0].As<Napi::Number>().Int32Value());
  if (err) throw Napi::Error::New(env, std::string("unlocking: ") + strerror(err));
  return env.Undefined();
}

}  // namespace

void DefineFileCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile, "unlockFile"));
}

}  // namespace addon
}  // namespace dsm
