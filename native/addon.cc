// The production addon (build/Release/node_dsm.node): JavaScript bindings, argument
// conversion only. The mechanism lives in the plain C++ classes (dsm.h and friends), which
// know nothing of JavaScript; the bindings are grouped by the thread that calls them
// (app_calls.cc, service_calls.cc); test and benchmark hooks are a separate addon
// (hooks_addon.cc), so a production build does not export them.
#include <napi.h>

#include "addon_calls.h"
#include "addon_env.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new dsm::addon::AddonEnv(env));
  dsm::addon::DefineAppCalls(env, exports);
  dsm::addon::DefineServiceCalls(env, exports);
  dsm::addon::DefineModelCalls(env, exports);
  dsm::addon::DefineFileCalls(env, exports);
  exports.Set("constants", dsm::addon::SharedConstants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(node_dsm, Init)
