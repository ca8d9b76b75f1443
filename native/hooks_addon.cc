// The test and benchmark hooks (build/Release/node_dsm_hooks.node), kept out of the
// production addon: raw memory reads that fault on purpose, and the native floors the
// benchmarks compare against. Loaded through lib/native.ts loadNativeHooks(). It shares no
// state with the production addon: a read of the DSM region faults into the DSM's handler
// like any other access.
#include <napi.h>

#include <cstdint>

#include "commit_record.h"
#include "fault_floor.h"

namespace {

// readByte(address): one byte read from native code on the calling thread. Outside any
// mapping it is a real segfault (which must still kill the process); on the app view from
// the service thread it must abort with a message (nobody could resolve that fault).
Napi::Value ReadByte(const Napi::CallbackInfo& info) {
  const double a = info[0].As<Napi::Number>().DoubleValue();
  volatile uint8_t* p = reinterpret_cast<volatile uint8_t*>(uintptr_t(a));
  return Napi::Number::New(info.Env(), *p);
}

uint32_t U32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }

Napi::Value MeasureFaultFloor(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), dsm::MeasureFaultFloorNs(U32(info[0]), U32(info[1])));
}
Napi::Value MeasureMprotect(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), dsm::MeasureMprotectNs(U32(info[0]), U32(info[1])));
}
Napi::Value MeasureMalloc(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), dsm::MeasureMallocNs(U32(info[0]), U32(info[1]), U32(info[2])));
}

// putCommitRecord(words, w, time, pages, changes): the production addon's commit-ring
// writer (native/commit_record.h) on its own, so a test can read its records back with
// the service's JavaScript drain. Returns the word after the record.
Napi::Value PutCommitRecord(const Napi::CallbackInfo& info) {
  Napi::Uint32Array words = info[0].As<Napi::Uint32Array>();
  Napi::Uint32Array pages = info[3].As<Napi::Uint32Array>();
  Napi::Uint8Array changes = info[4].As<Napi::Uint8Array>();
  const uint64_t time = uint64_t(info[2].As<Napi::Number>().Int64Value());
  return Napi::Number::New(info.Env(), dsm::PutCommitRecord(words.Data(), uint32_t(words.ElementLength() - 1), U32(info[1]), time,
                                                            pages.Data(), pages.ElementLength(), changes.Data(), changes.ElementLength()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("putCommitRecord", Napi::Function::New(env, PutCommitRecord, "putCommitRecord"));
  exports.Set("readByte", Napi::Function::New(env, ReadByte, "readByte"));
  exports.Set("measureFaultFloor", Napi::Function::New(env, MeasureFaultFloor, "measureFaultFloor"));
  exports.Set("measureMprotect", Napi::Function::New(env, MeasureMprotect, "measureMprotect"));
  exports.Set("measureMalloc", Napi::Function::New(env, MeasureMalloc, "measureMalloc"));
  return exports;
}

}  // namespace

NODE_API_MODULE(node_dsm_hooks, Init)
