// Conversions between JavaScript values and the native core's arguments, and the errors
// the bindings throw. Shared by the app-thread and service-thread bindings.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dsm.h"

namespace dsm {
namespace addon {

// Throws an Error with a stable `code` (the ERR_DSM_* codes of lib/errors.ts).
[[noreturn]] inline void ThrowCoded(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

inline uint32_t PageArg(Napi::Env env, Dsm* d, Napi::Value v) {
  double p = v.As<Napi::Number>().DoubleValue();
  if (!(p >= 0 && p < d->region().numPages()) || p != double(uint32_t(p))) {
    throw Napi::RangeError::New(env, "page number out of range");
  }
  return uint32_t(p);
}

inline uint32_t U32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }
inline uint64_t U64(const Napi::Value& v) { return uint64_t(v.As<Napi::Number>().Int64Value()); }

// Versions and times travel as doubles; converting one that is negative, NaN or past 2^64
// to uint64_t would be undefined behaviour, so bulk calls check each against this first.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// An ArrayBuffer over native memory the addon owns (nothing to free when it is collected).
inline Napi::ArrayBuffer External(Napi::Env env, void* p, size_t n) {
  return Napi::ArrayBuffer::New(env, p, n, [](Napi::Env, void*) {});
}

inline Napi::Value PagesArray(Napi::Env env, const std::vector<uint32_t>& v) {
  auto a = Napi::Uint32Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a[i] = v[i];
  return a;
}

}  // namespace addon
}  // namespace dsm
