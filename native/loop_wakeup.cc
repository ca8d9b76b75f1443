#include "loop_wakeup.h"

namespace dsm {
namespace addon {

LoopWakeup* LoopWakeup::Create(Napi::Env env, Napi::Function onWake) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  auto* w = new LoopWakeup();
  w->env_ = env;
  w->onWake_ = Napi::Persistent(onWake);
  w->async_.data = w;
  uv_async_init(loop, &w->async_, OnAsync);
  return w;
}

void LoopWakeup::Send(void* self) { uv_async_send(&static_cast<LoopWakeup*>(self)->async_); }

void LoopWakeup::Ref() { uv_ref(reinterpret_cast<uv_handle_t*>(&async_)); }
void LoopWakeup::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&async_)); }

void LoopWakeup::Close() {
  onWake_.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) { delete static_cast<LoopWakeup*>(h->data); });
}

void LoopWakeup::OnAsync(uv_async_t* h) {
  auto* w = static_cast<LoopWakeup*>(h->data);
  if (w->onWake_.IsEmpty()) return;
  Napi::Env env(w->env_);
  Napi::HandleScope scope(env);
  try {
    w->onWake_.MakeCallback(env.Global(), {});
  } catch (const Napi::Error& e) {
    napi_fatal_exception(w->env_, e.Value());
  }
}

}  // namespace addon
}  // namespace dsm
