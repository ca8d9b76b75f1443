#include "app_interrupt.h"

#include <v8.h>

#include <atomic>
#include <cstring>

#include "dsm.h"

namespace dsm {
namespace app_interrupt {
namespace {

std::atomic<v8::Isolate*> g_isolate{nullptr};
std::atomic<Dsm*> g_dsm{nullptr};
std::atomic<bool> g_terminating{false};

// napi_value is a v8::Local<v8::Value> under the hood in Node; this is the conversion
// Node's own js_native_api_v8 uses.
v8::Local<v8::Value> ToV8(napi_value v) {
  v8::Local<v8::Value> local;
  memcpy(static_cast<void*>(&local), &v, sizeof(v));
  return local;
}
napi_value FromV8(v8::Local<v8::Value> local) {
  napi_value v;
  memcpy(static_cast<void*>(&v), &local, sizeof(local));
  return v;
}

void OnInterrupt(v8::Isolate* iso, void*) {
  Dsm* d = g_dsm.load(std::memory_order_acquire);
  if (d && d->active() && d->doomed()) {
    g_terminating.store(true, std::memory_order_release);
    iso->TerminateExecution();
  }
}

}  // namespace

void Bind(Dsm* d) {
  g_isolate.store(v8::Isolate::GetCurrent(), std::memory_order_release);
  g_dsm.store(d, std::memory_order_release);
}

void Unbind() {
  g_dsm.store(nullptr, std::memory_order_release);
  g_isolate.store(nullptr, std::memory_order_release);
}

void Request() {
  v8::Isolate* iso = g_isolate.load(std::memory_order_acquire);
  Dsm* d = g_dsm.load(std::memory_order_acquire);
  // RequestInterrupt is documented thread-safe; the callback re-checks on the app thread.
  if (iso && d && d->active()) iso->RequestInterrupt(OnInterrupt, nullptr);
}

Napi::Value RunTransaction(const Napi::CallbackInfo& info, Dsm* d) {
  Napi::Env env = info.Env();
  v8::Isolate* iso = v8::Isolate::GetCurrent();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  v8::Local<v8::Value> fnv = ToV8(info[0]);
  if (!fnv->IsFunction()) throw Napi::TypeError::New(env, "transaction: fn must be a function");
  v8::Local<v8::Value> arg = ToV8(info[1]);
  uint32_t status = kReturned;
  v8::Local<v8::Value> out;
  d->Begin();
  {
    v8::TryCatch tc(iso);
    v8::MaybeLocal<v8::Value> r = fnv.As<v8::Function>()->Call(ctx, v8::Undefined(iso), 1, &arg);
    if (tc.HasTerminated() || g_terminating.load(std::memory_order_acquire)) {
      // Ours: OnInterrupt only terminates inside a doomed transaction, i.e. inside this call.
      g_terminating.store(false, std::memory_order_release);
      iso->CancelTerminateExecution();
      status = kTerminated;
      out = v8::Undefined(iso);
    } else if (r.IsEmpty()) {
      status = kThrew;
      out = tc.Exception();
    } else {
      out = r.ToLocalChecked();
    }
  }
  uint32_t writes = d->End();
  Napi::Array res = Napi::Array::New(env, 3);
  res.Set(0u, Napi::Number::New(env, status));
  res.Set(1u, Napi::Value(env, FromV8(out)));
  res.Set(2u, Napi::Number::New(env, writes));
  return res;
}

}  // namespace app_interrupt
}  // namespace dsm
