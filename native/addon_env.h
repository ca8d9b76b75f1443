// The addon's state in one JavaScript environment, and the process's one Dsm.
//
// One Dsm per process (signal handlers are per process). The environment that opens it is
// the app environment and owns it; the service worker's environment attaches to it. Each
// environment has its own AddonEnv (its instance data), torn down with the environment.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <vector>

#include "dsm.h"
#include "idle_poller.h"
#include "loop_wakeup.h"

namespace dsm {
namespace addon {

class AddonEnv {
 public:
  explicit AddonEnv(Napi::Env env);
  static AddonEnv& Of(Napi::Env env) { return *env.GetInstanceData<AddonEnv>(); }

  // The open Dsm; throws ERR_DSM_CLOSED when there is none.
  static Dsm* Need(Napi::Env env);
  // The open Dsm or null; a plain load, for calls that run before every public call.
  static Dsm* Current() { return dsm_; }

  // App environment. `onCommitReply` (may be empty) runs when the service answers a commit.
  Dsm* OpenRegion(Napi::Env env, const Options& o, Napi::Value onCommitReply);
  void CloseRegion();
  // Empties the program's views of the region, which stays mapped (a node closing: its
  // service hands pages over, and a touch of a page it gave away could be served by nobody).
  void DetachAppView();
  // Keeps a view's buffer so CloseRegion() can detach it (programs may still hold the view).
  Napi::ArrayBuffer Keep(Napi::ArrayBuffer b);
  void SetAppBuffer(Napi::ArrayBuffer b) { appBuffer_ = Napi::Persistent(b); }
  // Only an awaited commit keeps the process alive: referenced from post to reply.
  LoopWakeup* appWakeup() const { return appWakeup_; }

  // Service environment.
  void AttachService(Napi::Env env, Napi::Function onRequests);
  void DetachService();
  LoopWakeup* serviceWakeup() const { return serviceWakeup_; }

  // The app's idle poller (idle_poller.h), made on first use; it needs no open region.
  IdlePoller& poller() {
    if (!poller_) poller_ = std::make_unique<IdlePoller>();
    return *poller_;
  }

  // commitToRing()'s encoding of a commit, kept between commits (up to kScratchKeepBytes)
  // so that committing allocates nothing once warm.
  std::vector<uint32_t> commitPages;
  std::vector<uint8_t> commitChanges;
  static constexpr size_t kScratchKeepBytes = 1 << 20;

 private:
  void CloseAppWakeup();
  // The teardown CloseRegion() and Cleanup() share once their buffers are dealt with.
  void ReleaseRegion();
  void Cleanup();

  static std::mutex mu_;  // guards dsm_'s lifetime
  static Dsm* dsm_;

  bool owner_ = false;
  Napi::Reference<Napi::ArrayBuffer> appBuffer_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> keep_;
  LoopWakeup* serviceWakeup_ = nullptr;  // service environment: faults, commit requests, data
  LoopWakeup* appWakeup_ = nullptr;      // app environment: commit replies
  std::unique_ptr<IdlePoller> poller_;
};

}  // namespace addon
}  // namespace dsm
