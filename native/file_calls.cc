// Bindings for file locks (file_lock.cc), used by the page store to keep one owner per
// directory. Argument conversion only; any thread.
#include <string.h>

#include "addon_calls.h"
#include "file_lock.h"

namespace dsm {
namespace addon {
namespace {

// lockFile(path): the descriptor holding an exclusive lock on `path` (close it with
// fs.closeSync to release), or -1 while another holder has it. Other failures throw.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "lockFile: path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const FileLockResult r = TryLockFile(path.c_str());
  if (r.error) throw Napi::Error::New(env, r.what + " " + path + ": " + strerror(r.error));
  return Napi::Number::New(env, r.held ? -1 : r.fd);
}

}  // namespace

void DefineFileCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
}

}  // namespace addon
}  // namespace dsm
