// A JavaScript callback run on one environment's event loop when another thread, or the
// fault handler, wakes it. The wake-up is uv_async_send (documented async-signal-safe);
// Send() is shaped as a Wakeup::Fn so the native core can hold it without libuv.
#pragma once
#include <napi.h>
#include <uv.h>

namespace dsm {
namespace addon {

class LoopWakeup {
 public:
  // On `env`'s loop; like any handle it keeps the loop alive until Unref()'d.
  static LoopWakeup* Create(Napi::Env env, Napi::Function onWake);
  // Any thread, signal-safe: `self` is a LoopWakeup*.
  static void Send(void* self);
  void Ref();
  void Unref();
  // Removes the callback and frees this once libuv has let go of the handle. Whoever sends
  // must have stopped first (Wakeup::Set(nullptr) waits for that).
  void Close();

 private:
  LoopWakeup() = default;
  static void OnAsync(uv_async_t* h);
  uv_async_t async_;
  napi_env env_ = nullptr;
  Napi::FunctionReference onWake_;
};

}  // namespace addon
}  // namespace dsm
