// The numbers C++ and TypeScript must agree on, exported as `constants`. lib/native.ts
// compiles its own copies in (for types) and compares them with these when it loads the
// addon, so a change on one side alone fails at load, naming what differs.
#include "addon_calls.h"
#include "app_interrupt.h"
#include "commit_channel.h"
#include "page_table.h"
#include "stats.h"

namespace dsm {
namespace addon {
namespace {

Napi::Object Table(Napi::Env env, std::initializer_list<std::pair<const char*, uint32_t>> entries) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [name, value] : entries) o.Set(name, Napi::Number::New(env, value));
  return o;
}

}  // namespace

Napi::Object SharedConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("pageStates", Table(env, {{"invalid", kInvalid}, {"validUnmapped", kValidUnmapped}, {"read", kRead}, {"write", kWrite}}));
  Napi::Object counters = Napi::Object::New(env);
  for (uint32_t i = 0; i < kCounterCount; i++) counters.Set(kCounterNames[i], Napi::Number::New(env, i));
  c.Set("counters", counters);
  c.Set("commitKinds", Table(env, {{"commit", CommitChannel::kCommit},
                                   {"sync", CommitChannel::kSync},
                                   {"hold", CommitChannel::kHold},
                                   {"release", CommitChannel::kRelease}}));
  c.Set("commitStatuses", Table(env, {{"committed", CommitChannel::kCommitted},
                                      {"doomed", CommitChannel::kDoomed},
                                      {"failed", CommitChannel::kFailed},
                                      {"partitioned", CommitChannel::kPartitioned}}));
  c.Set("runStatuses", Table(env, {{"returned", app_interrupt::kReturned},
                                   {"threw", app_interrupt::kThrew},
                                   {"terminated", app_interrupt::kTerminated}}));
  c.Freeze();
  return c;
}

}  // namespace addon
}  // namespace dsm
