// Bindings called on the app thread: opening and closing the region, running transactions,
// posting commits to the service and taking its answers. Argument conversion only.
//
// commit(), doomed() and writeSet() are also called by the service thread when it commits
// a transaction for the app (it holds the token then, and the app is waiting).
#include <cstdio>
#include <cstdlib>

#include "addon_calls.h"
#include "addon_env.h"
#include "app_interrupt.h"
#include "commit_record.h"
#include "js_args.h"

namespace dsm {
namespace addon {
namespace {

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonEnv& ae = AddonEnv::Of(env);
  Napi::Object o = info[0].As<Napi::Object>();
  Options opt;
  opt.base = uintptr_t(o.Get("base").As<Napi::Number>().Int64Value());
  opt.size = size_t(o.Get("size").As<Napi::Number>().Int64Value());
  opt.pageShift = U32(o.Get("pageShift"));
  opt.startInvalid = o.Get("startInvalid").ToBoolean();
  Dsm* d = ae.OpenRegion(env, opt, info[1]);
  Region& r = d->region();
  PageTable& pt = d->pages();
  const uint32_t n = r.numPages();
  Napi::Object out = Napi::Object::New(env);
  Napi::ArrayBuffer app = External(env, r.app(), r.size());
  ae.SetAppBuffer(app);
  out.Set("buffer", app);
  out.Set("pageSize", double(r.pageSize()));
  out.Set("numPages", double(n));
  out.Set("states", Napi::Uint8Array::New(env, n, ae.Keep(External(env, pt.states(), n)), 0));
  out.Set("owners", Napi::Uint16Array::New(env, n, ae.Keep(External(env, pt.owners(), size_t(n) * 2)), 0));
  auto versions = ae.Keep(External(env, pt.versions(), size_t(n) * 8));
  out.Set("versions", Napi::TypedArrayOf<uint64_t>::New(env, n, versions, 0, napi_biguint64_array));
  auto stats = ae.Keep(External(env, &d->stats(), sizeof(Stats)));
  out.Set("stats", Napi::TypedArrayOf<uint64_t>::New(env, kCounterCount, stats, 0, napi_biguint64_array));
  return out;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  AddonEnv::Of(info.Env()).CloseRegion();
  return info.Env().Undefined();
}

Napi::Value DetachAppView(const Napi::CallbackInfo& info) {
  AddonEnv::Of(info.Env()).DetachAppView();
  return info.Env().Undefined();
}

Napi::Value Begin(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->Begin();
  return info.Env().Undefined();
}
Napi::Value End(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), AddonEnv::Need(info.Env())->End());
}
Napi::Value Abort(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->Abort();
  return info.Env().Undefined();
}
// commit(time, owner, withChanges): with `withChanges`, returns [pages, changes] for the
// commit record (Dsm::Commit).
Napi::Value Commit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  if (!info[2].ToBoolean()) {
    d->Commit(U64(info[0]), uint16_t(U32(info[1])));
    return env.Undefined();
  }
  std::vector<uint32_t> pages;
  std::vector<uint8_t> changes;
  d->Commit(U64(info[0]), uint16_t(U32(info[1])), &pages, &changes);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, PagesArray(env, pages));
  out.Set(1u, Napi::Buffer<uint8_t>::Copy(env, changes.data(), changes.size()));
  return out;
}
// commitToRing(time, owner, words, w, room): commits like commit(time, owner, true) and
// writes the record into the commit ring's `words` at word `w` (native/commit_record.h);
// returns the word after it. The caller has made sure `room` words are free there
// (CommitRing.fits, with room for every written page whole and half a page of diff).
Napi::Value CommitToRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  Napi::Uint32Array words = info[2].As<Napi::Uint32Array>();
  const size_t count = words.ElementLength();
  if (count == 0 || (count & (count - 1)) != 0) throw Napi::RangeError::New(env, "commitToRing: the ring's length must be a power of two");
  const uint64_t time = U64(info[0]);
  AddonEnv& e = AddonEnv::Of(env);
  e.commitPages.clear();
  e.commitChanges.clear();
  d->Commit(time, uint16_t(U32(info[1])), &e.commitPages, &e.commitChanges);
  // Committed already: a record that does not fit is a bug in the caller's estimate, and
  // writing it would overwrite commits the service has not read.
  if (CommitRecordWords(e.commitPages.size(), e.commitChanges.size()) > U32(info[4])) {
    std::fprintf(stderr, "node-dsm: fatal: a commit's record is larger than the room the commit ring was checked for\n");
    std::abort();
  }
  const uint32_t end = PutCommitRecord(words.Data(), uint32_t(count - 1), U32(info[3]), time, e.commitPages.data(),
                                       e.commitPages.size(), e.commitChanges.data(), e.commitChanges.size());
  // Kept for the next commit, unless a large one left them large.
  if (e.commitChanges.capacity() > AddonEnv::kScratchKeepBytes) std::vector<uint8_t>().swap(e.commitChanges);
  if (e.commitPages.capacity() * sizeof(uint32_t) > AddonEnv::kScratchKeepBytes) std::vector<uint32_t>().swap(e.commitPages);
  return Napi::Number::New(env, end);
}
Napi::Value Doomed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), AddonEnv::Need(info.Env())->doomed());
}
// doomCause(): [page, node] of the commit that doomed the live transaction first, or null.
Napi::Value DoomCause(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t page;
  uint16_t node;
  if (!AddonEnv::Need(env)->DoomCause(&page, &node)) return env.Null();
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, page));
  a.Set(1u, Napi::Number::New(env, node));
  return a;
}
Napi::Value ReadSet(const Napi::CallbackInfo& info) {
  return PagesArray(info.Env(), AddonEnv::Need(info.Env())->ReadSet());
}
Napi::Value WriteSet(const Napi::CallbackInfo& info) {
  return PagesArray(info.Env(), AddonEnv::Need(info.Env())->WriteSet());
}
Napi::Value TakeViolations(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Current();  // runs before every public call: keep it cheap
  return Napi::Number::New(info.Env(), d && d->violation() ? d->TakeViolations() : 0);
}
Napi::Value TakeLost(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Current();
  return Napi::Number::New(info.Env(), d ? double(d->TakeLost()) : -1.0);
}

Napi::Value RunTransaction(const Napi::CallbackInfo& info) {
  return app_interrupt::RunTransaction(info, AddonEnv::Need(info.Env()));
}

Napi::Value PostCommit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  const uint32_t kind = U32(info[0]);
  if (kind == CommitChannel::kNone || kind >= CommitChannel::kKindLimit) {
    throw Napi::RangeError::New(env, "postCommit: unknown request kind " + std::to_string(kind));
  }
  bool ok = d->channel().Post(CommitChannel::Kind(kind));
  LoopWakeup* w = AddonEnv::Of(env).appWakeup();
  if (ok && w) w->Ref();
  return Napi::Boolean::New(env, ok);
}

Napi::Value TakeCommitReply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t time = 0;
  uint32_t s = AddonEnv::Need(env)->channel().TakeReply(&time);
  if (!s) return env.Null();
  LoopWakeup* w = AddonEnv::Of(env).appWakeup();
  if (w) w->Unref();
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, s));
  a.Set(1u, Napi::Number::New(env, double(time)));
  return a;
}

// pollIdle(us): keeps this process's CPU awake, at idle priority, for up to `us`
// microseconds or until stopIdlePoll() (idle_poller.h). False when it cannot spin harmlessly.
Napi::Value PollIdle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double us = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(us >= 0 && us <= 60e6)) throw Napi::TypeError::New(env, "pollIdle: us must be a number from 0 to 60,000,000");
  return Napi::Boolean::New(env, AddonEnv::Of(env).poller().Poll(uint64_t(us * 1000)));
}

Napi::Value StopIdlePoll(const Napi::CallbackInfo& info) {
  AddonEnv::Of(info.Env()).poller().Stop();
  return info.Env().Undefined();
}

}  // namespace

void DefineAppCalls(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> calls[] = {
      {"open", Open},
      {"close", Close},
      {"detachAppView", DetachAppView},
      {"begin", Begin},
      {"end", End},
      {"abort", Abort},
      {"commit", Commit},
      {"commitToRing", CommitToRing},
      {"doomed", Doomed},
      {"doomCause", DoomCause},
      {"readSet", ReadSet},
      {"writeSet", WriteSet},
      {"takeViolations", TakeViolations},
      {"takeLost", TakeLost},
      {"runTransaction", RunTransaction},
      {"postCommit", PostCommit},
      {"takeCommitReply", TakeCommitReply},
      {"pollIdle", PollIdle},
      {"stopIdlePoll", StopIdlePoll},
  };
  for (const auto& [name, fn] : calls) exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace addon
}  // namespace dsm
