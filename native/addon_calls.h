// The production addon's exports, grouped by the thread that calls them (the test and
// benchmark hooks live in a separate addon, hooks_addon.cc).
#pragma once
#include <napi.h>

namespace dsm {
namespace addon {

// app_calls.cc
void DefineAppCalls(Napi::Env env, Napi::Object exports);
// service_calls.cc
void DefineServiceCalls(Napi::Env env, Napi::Object exports);
// model_calls.cc: consistency models (both threads).
void DefineModelCalls(Napi::Env env, Napi::Object exports);
// file_calls.cc: file locks (the page store's single owner).
void DefineFileCalls(Napi::Env env, Napi::Object exports);
// shared_constants.cc: the `constants` export.
Napi::Object SharedConstants(Napi::Env env);

}  // namespace addon
}  // namespace dsm
