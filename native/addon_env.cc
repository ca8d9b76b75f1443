#include "addon_env.h"

#include <cstring>

#include "app_interrupt.h"
#include "fault_handler.h"
#include "js_args.h"
#include "lease_alarm.h"

namespace dsm {
namespace addon {

std::mutex AddonEnv::mu_;
Dsm* AddonEnv::dsm_ = nullptr;

AddonEnv::AddonEnv(Napi::Env env) {
  env.AddCleanupHook([this] { Cleanup(); });
}

Dsm* AddonEnv::Need(Napi::Env env) {
  Dsm* d = dsm_;
  if (!d) ThrowCoded(env, "ERR_DSM_CLOSED", "the DSM node is closed");
  return d;
}

Dsm* AddonEnv::OpenRegion(Napi::Env env, const Options& opt, Napi::Value onCommitReply) {
  std::lock_guard<std::mutex> g(mu_);
  if (dsm_) ThrowCoded(env, "ERR_DSM_ALREADY_OPEN", "a DSM node is already open in this process; close it first (one node per process)");
  auto d = std::make_unique<Dsm>();
  RegionError err;
  if (!d->Open(opt, &err)) {
    const char* code = err.code == RegionError::kBaseInUse      ? "ERR_DSM_BASE_IN_USE"
                       : err.code == RegionError::kInvalidOption ? "ERR_DSM_INVALID_OPTION"
                                                                 : "ERR_DSM_SYSTEM";
    ThrowCoded(env, code, err.message);
  }
  if (!fault_handler::Attach(d.get())) ThrowCoded(env, "ERR_DSM_SYSTEM", "installing the SIGSEGV handler failed");
  // This thread opens the region, so it is the app thread the alarm stops.
  if (!lease_alarm::Attach(d.get())) {
    fault_handler::Detach();
    ThrowCoded(env, "ERR_DSM_SYSTEM", std::string("setting up the lease alarm failed (") + strerror(errno) +
                                          "): it needs a free real-time signal and a POSIX timer");
  }
  dsm_ = d.release();
  owner_ = true;
  app_interrupt::Bind(dsm_);
  if (onCommitReply.IsFunction()) {
    appWakeup_ = LoopWakeup::Create(env, onCommitReply.As<Napi::Function>());
    appWakeup_->Unref();
    dsm_->channel().SetAppNotifier(LoopWakeup::Send, appWakeup_);
  }
  return dsm_;
}

Napi::ArrayBuffer AddonEnv::Keep(Napi::ArrayBuffer b) {
  keep_.push_back(Napi::Persistent(b));
  return b;
}

void AddonEnv::CloseRegion() {
  if (!owner_) return;
  for (auto& ref : keep_) {
    if (!ref.IsEmpty()) ref.Value().Detach();
  }
  keep_.clear();
  DetachAppView();
  ReleaseRegion();
}

void AddonEnv::DetachAppView() {
  if (appBuffer_.IsEmpty()) return;
  // Views held by the program become empty instead of pointing at unmapped memory, or at
  // pages no service thread will fetch any more.
  appBuffer_.Value().Detach();
  appBuffer_.Reset();
}

void AddonEnv::ReleaseRegion() {
  CloseAppWakeup();
  std::lock_guard<std::mutex> g(mu_);
  lease_alarm::Detach();
  fault_handler::Detach();
  app_interrupt::Unbind();
  delete dsm_;
  dsm_ = nullptr;
  owner_ = false;
}

void AddonEnv::CloseAppWakeup() {
  if (!appWakeup_) return;
  if (dsm_) dsm_->channel().SetAppNotifier(nullptr, nullptr);  // waits for a reply's wake-up in progress
  appWakeup_->Close();
  appWakeup_ = nullptr;
}

void AddonEnv::AttachService(Napi::Env env, Napi::Function onRequests) {
  Dsm* d = Need(env);
  if (serviceWakeup_) ThrowCoded(env, "ERR_DSM_SYSTEM", "the service is already attached");
  serviceWakeup_ = LoopWakeup::Create(env, onRequests);
  d->SetServiceThread(pthread_self(), true);
  d->ring().SetNotifier(LoopWakeup::Send, serviceWakeup_);
  d->channel().SetServiceNotifier(LoopWakeup::Send, serviceWakeup_);
}

void AddonEnv::DetachService() {
  if (!serviceWakeup_) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (dsm_) {
      // Each waits for a wake-up in progress, so the handle can close below.
      dsm_->ring().SetNotifier(nullptr, nullptr);
      dsm_->channel().SetServiceNotifier(nullptr, nullptr);
      dsm_->CloseDataChannels();  // they wake this environment too
      dsm_->SetServiceThread(pthread_t(), false);
      dsm_->ring().FailAll();
    }
  }
  serviceWakeup_->Close();
  serviceWakeup_ = nullptr;
}

void AddonEnv::Cleanup() {
  poller_.reset();  // stops and joins its thread
  DetachService();
  if (!owner_) return;
  // The environment is going: its buffers go with it, nothing to detach.
  keep_.clear();
  appBuffer_.Reset();
  ReleaseRegion();
}

}  // namespace addon
}  // namespace dsm
