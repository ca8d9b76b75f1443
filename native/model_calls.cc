// Bindings for pages outside transactional consistency (models.cc): the app thread declares
// an allocation's model, the service thread carries it to other nodes and runs the
// sequential and local protocols. Argument conversion only.
#include "addon_calls.h"
#include "app_interrupt.h"
#include "addon_env.h"
#include "js_args.h"

namespace dsm {
namespace addon {
namespace {

const uint8_t* PageData(Napi::Env env, Dsm* d, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) return nullptr;
  auto a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() != d->region().pageSize()) throw Napi::RangeError::New(env, std::string(what) + ": data must be exactly one page");
  return a.Data();
}

uint8_t ModelArg(Napi::Env env, const Napi::Value& v) {
  const uint32_t m = U32(v);
  if (m != kTransactional && m != kLocal && m != kSequential && m != kMigratory) throw Napi::RangeError::New(env, "unknown page model " + std::to_string(m));
  return uint8_t(m);
}

// App: declareModel(firstPage, count, model)
Napi::Value DeclareModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t first = PageArg(env, d, info[0]);
  const uint32_t count = U32(info[1]);
  if (count > d->region().numPages() - first) throw Napi::RangeError::New(env, "declareModel: pages beyond the region");
  d->DeclareModel(first, count, ModelArg(env, info[2]));
  return env.Undefined();
}
// App: declareLost(page, model, lostOwner) -> whether the page was still lost (and is declared)
Napi::Value DeclareLost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t page = PageArg(env, d, info[0]);
  return Napi::Boolean::New(env, d->DeclareLost(page, ModelArg(env, info[1]), uint16_t(U32(info[2]))));
}
// App: the page of another node's local allocation touched here, or -1.
Napi::Value TakeLocalTouched(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Current();
  return Napi::Number::New(info.Env(), d ? double(d->TakeLocalTouched()) : -1.0);
}

// Service: takeModelChanges(time) -> Uint32Array of (first, count, model) triples.
Napi::Value TakeModelChanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Dsm::ModelChange> v;
  AddonEnv::Need(env)->TakeModelChanges(U64(info[0]), &v);
  auto a = Napi::Uint32Array::New(env, v.size() * 3);
  for (size_t i = 0; i < v.size(); i++) {
    a[i * 3] = v[i].first;
    a[i * 3 + 1] = v[i].count;
    a[i * 3 + 2] = v[i].model;
  }
  return a;
}
// App: claimFresh(firstPage, count) -> whether the live transaction is doomed
Napi::Value ClaimFresh(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  return Napi::Boolean::New(env, d->ClaimFresh(PageArg(env, d, info[0]), U32(info[1])));
}
// Service: setModel(first, count, model, owner)
Napi::Value SetModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // A run doomed here stops at its next interrupt check rather than when it returns.
  if (AddonEnv::Need(env)->SetModel(U32(info[0]), U32(info[1]), ModelArg(env, info[2]), uint16_t(U32(info[3])))) app_interrupt::Request();
  return env.Undefined();
}
// Service: shareSequential(page, out, drop, newOwner) -> bool
Napi::Value ShareSequential(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t page = PageArg(env, d, info[0]);
  auto out = info[1].As<Napi::Uint8Array>();
  if (out.ByteLength() != d->region().pageSize()) throw Napi::RangeError::New(env, "shareSequential: out must be exactly one page");
  return Napi::Boolean::New(env, d->ShareSequential(page, out.Data(), info[2].ToBoolean(), uint16_t(U32(info[3]))));
}
// Service: installSequential(page, data | null, own, owner)
Napi::Value InstallSequential(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t page = PageArg(env, d, info[0]);
  d->InstallSequential(page, PageData(env, d, info[1], "installSequential"), info[2].ToBoolean(), uint16_t(U32(info[3])));
  return env.Undefined();
}
Napi::Value DropSequential(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  d->DropSequential(PageArg(env, d, info[0]), uint16_t(U32(info[1])));
  return env.Undefined();
}
Napi::Value OwnSequential(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  d->OwnSequential(PageArg(env, d, info[0]));
  return env.Undefined();
}
Napi::Value FenceModels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  return Napi::Number::New(env, d->Fence(info[0].ToBoolean()));
}
Napi::Value ModelsFenced(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), AddonEnv::Need(info.Env())->fenced());
}
Napi::Value RefuseLocal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  d->RefuseLocal(PageArg(env, d, info[0]));
  return env.Undefined();
}
// Service: the per-page model bytes (PageModel | kHere), read-only.
Napi::Value PageModels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t n = d->region().numPages();
  return Napi::Uint8Array::New(env, n, External(env, d->pages().models(), n), 0);
}

}  // namespace

void DefineModelCalls(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> calls[] = {
      {"declareModel", DeclareModel},
      {"claimFresh", ClaimFresh},
      {"declareLost", DeclareLost},
      {"takeLocalTouched", TakeLocalTouched},
      {"takeModelChanges", TakeModelChanges},
      {"setModel", SetModel},
      {"shareSequential", ShareSequential},
      {"installSequential", InstallSequential},
      {"dropSequential", DropSequential},
      {"ownSequential", OwnSequential},
      {"refuseLocal", RefuseLocal},
      {"fenceModels", FenceModels},
      {"modelsFenced", ModelsFenced},
      {"pageModels", PageModels},
  };
  for (const auto& [name, fn] : calls) exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace addon
}  // namespace dsm
