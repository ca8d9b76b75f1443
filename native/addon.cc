// JavaScript bindings: argument conversion only. The mechanism lives in the plain C++
// classes (dsm.h and friends), which know nothing of JavaScript.
//
// One Dsm per process (signal handlers are per process). The environment that opens it is
// the app environment; the service worker's environment attaches to it. Each environment
// has its own Addon instance, cleaned up with the environment.
#include <napi.h>
#include <uv.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <mutex>

#include "app_interrupt.h"
#include "dsm.h"
#include "fault_floor.h"
#include "fault_handler.h"

namespace {

std::mutex g_mutex;          // guards g_dsm's lifetime
dsm::Dsm* g_dsm = nullptr;   // the process's instance, owned by the opening environment

struct ServiceBridge {
  uv_async_t async;
  napi_env env;
  Napi::FunctionReference onRequests;
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
        InstanceMethod("open", &Addon::Open),
        InstanceMethod("close", &Addon::Close),
        InstanceMethod("begin", &Addon::Begin),
        InstanceMethod("end", &Addon::End),
        InstanceMethod("abort", &Addon::Abort),
        InstanceMethod("commit", &Addon::Commit),
        InstanceMethod("doomed", &Addon::Doomed),
        InstanceMethod("readSet", &Addon::ReadSet),
        InstanceMethod("writeSet", &Addon::WriteSet),
        InstanceMethod("takeViolations", &Addon::TakeViolations),
        InstanceMethod("attachService", &Addon::AttachService),
        InstanceMethod("detachService", &Addon::DetachService),
        InstanceMethod("takeRequests", &Addon::TakeRequests),
        InstanceMethod("completeRequest", &Addon::CompleteRequest),
        InstanceMethod("install", &Addon::Install),
        InstanceMethod("invalidate", &Addon::Invalidate),
        InstanceMethod("copyCommitted", &Addon::CopyCommitted),
        InstanceMethod("pageState", &Addon::PageState),
        InstanceMethod("touchAppView", &Addon::TouchAppView),
        InstanceMethod("measureFaultFloor", &Addon::MeasureFaultFloor),
        InstanceMethod("measureMprotect", &Addon::MeasureMprotect),
        InstanceMethod("measureMalloc", &Addon::MeasureMalloc),
        InstanceMethod("installPages", &Addon::InstallPages),
        InstanceMethod("openDataChannel", &Addon::OpenDataChannel),
        InstanceMethod("closeDataChannel", &Addon::CloseDataChannel),
        InstanceMethod("takeData", &Addon::TakeData),
        InstanceMethod("lastReadFault", &Addon::LastReadFault),
        InstanceMethod("copyCommittedPages", &Addon::CopyCommittedPages),
        InstanceMethod("runTransaction", &Addon::RunTransaction),
        InstanceMethod("postCommit", &Addon::PostCommit),
        InstanceMethod("takeCommitReply", &Addon::TakeCommitReply),
        InstanceMethod("takeCommitRequest", &Addon::TakeCommitRequest),
        InstanceMethod("replyCommit", &Addon::ReplyCommit),
        InstanceMethod("interruptApp", &Addon::InterruptApp),
        InstanceMethod("markLost", &Addon::MarkLost),
        InstanceMethod("takeLost", &Addon::TakeLost),
        InstanceMethod("pageTable", &Addon::PageTable),
        InstanceMethod("faultOutsideRegion", &Addon::FaultOutsideRegion),
        InstanceMethod("counters", &Addon::Counters),
    });
    env.AddCleanupHook([this] { Cleanup(); });
  }

 private:
  // ---- app environment ----
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    dsm::Options opt;
    opt.base = uintptr_t(o.Get("base").As<Napi::Number>().Int64Value());
    opt.size = size_t(o.Get("size").As<Napi::Number>().Int64Value());
    opt.pageShift = o.Get("pageShift").As<Napi::Number>().Uint32Value();
    opt.startInvalid = o.Get("startInvalid").ToBoolean();
    std::lock_guard<std::mutex> g(g_mutex);
    if (g_dsm) return Error(env, "ERR_DSM_ALREADY_OPEN", "a DSM node is already open in this process; close it first (one node per process)");
    auto d = std::make_unique<dsm::Dsm>();
    dsm::RegionError err;
    if (!d->Open(opt, &err)) {
      const char* code = err.code == dsm::RegionError::kBaseInUse      ? "ERR_DSM_BASE_IN_USE"
                         : err.code == dsm::RegionError::kInvalidOption ? "ERR_DSM_INVALID_OPTION"
                                                                        : "ERR_DSM_SYSTEM";
      return Error(env, code, err.message);
    }
    if (!dsm::fault_handler::Attach(d.get())) return Error(env, "ERR_DSM_SYSTEM", "installing the SIGSEGV handler failed");
    g_dsm = d.release();
    owner_ = true;
    dsm::app_interrupt::Bind(g_dsm);
    if (info[1].IsFunction()) {
      uv_loop_t* loop = nullptr;
      napi_get_uv_event_loop(env, &loop);
      appBridge_ = new ServiceBridge();
      appBridge_->env = env;
      appBridge_->onRequests = Napi::Persistent(info[1].As<Napi::Function>());
      appBridge_->async.data = appBridge_;
      uv_async_init(loop, &appBridge_->async, OnAsync);
      // Only an awaited commit keeps the process alive (see PostCommit).
      uv_unref(reinterpret_cast<uv_handle_t*>(&appBridge_->async));
      g_dsm->channel().SetAppNotifier([](void* a) { uv_async_send(static_cast<uv_async_t*>(a)); }, &appBridge_->async);
    }
    dsm::Region& r = g_dsm->region();
    dsm::PageTable& pt = g_dsm->pages();
    Napi::Object out = Napi::Object::New(env);
    appBuffer_ = Napi::Persistent(External(env, r.app(), r.size()));
    out.Set("buffer", appBuffer_.Value());
    out.Set("pageSize", double(r.pageSize()));
    out.Set("numPages", double(r.numPages()));
    out.Set("states", Napi::Uint8Array::New(env, r.numPages(), Keep(External(env, pt.states(), r.numPages())), 0));
    out.Set("owners", Napi::Uint16Array::New(env, r.numPages(), Keep(External(env, pt.owners(), r.numPages() * 2)), 0));
    auto versions = Keep(External(env, pt.versions(), size_t(r.numPages()) * 8));
    out.Set("versions", Napi::TypedArrayOf<uint64_t>::New(env, r.numPages(), versions, 0, napi_biguint64_array));
    auto stats = Keep(External(env, &g_dsm->stats(), sizeof(dsm::Stats)));
    out.Set("stats", Napi::TypedArrayOf<uint64_t>::New(env, dsm::kCounterCount, stats, 0, napi_biguint64_array));
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseRegion();
    return info.Env().Undefined();
  }

  Napi::Value Begin(const Napi::CallbackInfo& info) {
    Need(info.Env())->Begin();
    return info.Env().Undefined();
  }
  Napi::Value End(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), Need(info.Env())->End());
  }
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    Need(info.Env())->Abort();
    return info.Env().Undefined();
  }
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    Need(info.Env())->Commit(uint64_t(info[0].As<Napi::Number>().Int64Value()), uint16_t(info[1].As<Napi::Number>().Uint32Value()));
    return info.Env().Undefined();
  }
  Napi::Value Doomed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), Need(info.Env())->doomed());
  }
  Napi::Value ReadSet(const Napi::CallbackInfo& info) { return Pages(info.Env(), Need(info.Env())->ReadSet()); }
  Napi::Value WriteSet(const Napi::CallbackInfo& info) { return Pages(info.Env(), Need(info.Env())->WriteSet()); }
  Napi::Value TakeViolations(const Napi::CallbackInfo& info) {
    dsm::Dsm* d = g_dsm;  // a plain load: this runs before every public call, keep it cheap
    return Napi::Number::New(info.Env(), d && d->violation() ? d->TakeViolations() : 0);
  }

  // ---- service environment ----
  Napi::Value AttachService(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    if (bridge_) return Error(env, "ERR_DSM_SYSTEM", "the service is already attached");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    bridge_ = new ServiceBridge();
    bridge_->env = env;
    bridge_->onRequests = Napi::Persistent(info[0].As<Napi::Function>());
    bridge_->async.data = bridge_;
    uv_async_init(loop, &bridge_->async, OnAsync);
    d->SetServiceThread(pthread_self(), true);
    d->ring().SetNotifier([](void* a) { uv_async_send(static_cast<uv_async_t*>(a)); }, &bridge_->async);
    d->channel().SetServiceNotifier([](void* a) { uv_async_send(static_cast<uv_async_t*>(a)); }, &bridge_->async);
    return env.Undefined();
  }
  Napi::Value DetachService(const Napi::CallbackInfo& info) {
    DetachBridge();
    return info.Env().Undefined();
  }
  Napi::Value TakeRequests(const Napi::CallbackInfo& info) {
    dsm::Request reqs[dsm::RequestRing::kSlots];
    uint32_t n = Need(info.Env())->ring().Take(reqs, dsm::RequestRing::kSlots);
    auto arr = Napi::Uint32Array::New(info.Env(), size_t(n) * 3);
    for (uint32_t i = 0; i < n; i++) {
      arr[i * 3] = reqs[i].slot;
      arr[i * 3 + 1] = reqs[i].page;
      arr[i * 3 + 2] = reqs[i].flags;
    }
    return arr;
  }
  Napi::Value CompleteRequest(const Napi::CallbackInfo& info) {
    Need(info.Env())->ring().Complete(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  Napi::Value Install(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    uint32_t page = PageArg(env, d, info[0]);
    const uint8_t* data = nullptr;
    if (info[1].IsTypedArray()) {
      auto a = info[1].As<Napi::Uint8Array>();
      if (a.ByteLength() != d->region().pageSize()) {
        NAPI_THROW(Napi::RangeError::New(env, "install: data must be exactly one page"), env.Undefined());
      }
      data = a.Data();
    }
    bool ok = d->Install(page, data, uint64_t(info[2].As<Napi::Number>().Int64Value()),
                         uint16_t(info[3].As<Napi::Number>().Uint32Value()));
    return Napi::Boolean::New(env, ok);
  }
  // installPages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array,
  //              data: Uint8Array (pages.length pages) | null) -> installed count
  Napi::Value InstallPages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    if (!info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) {
      NAPI_THROW(Napi::TypeError::New(env, "installPages: pages, versions and owners must be typed arrays"), env.Undefined());
    }
    auto pages = info[0].As<Napi::Uint32Array>();
    auto versions = info[1].As<Napi::Float64Array>();
    auto owners = info[2].As<Napi::Uint16Array>();
    const uint32_t n = uint32_t(pages.ElementLength());
    if (versions.ElementLength() != n || owners.ElementLength() != n) {
      NAPI_THROW(Napi::RangeError::New(env, "installPages: pages, versions and owners differ in length"), env.Undefined());
    }
    const uint8_t* data = nullptr;
    if (info[3].IsTypedArray()) {
      auto a = info[3].As<Napi::Uint8Array>();
      if (a.ByteLength() != size_t(n) * d->region().pageSize()) {
        NAPI_THROW(Napi::RangeError::New(env, "installPages: data must hold exactly one page per page number"), env.Undefined());
      }
      data = a.Data();
    }
    std::vector<uint64_t> v(n);
    for (uint32_t i = 0; i < n; i++) {
      if (pages[i] >= d->region().numPages()) {
        NAPI_THROW(Napi::RangeError::New(env, "installPages: page number outside the region"), env.Undefined());
      }
      v[i] = uint64_t(versions[i]);
    }
    return Napi::Number::New(env, d->InstallPages(pages.Data(), v.data(), owners.Data(), n, data));
  }
  // openDataChannel(fd, { clusterId, protocolVersion, replyType, heartbeatType, maxFrame,
  // heartbeatMs }) -> id. The socket is duplicated: the caller closes its own handle.
  Napi::Value OpenDataChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    if (!bridge_) return Error(env, "ERR_DSM_SYSTEM", "data channels belong to the service thread");
    int fd = dup(info[0].As<Napi::Number>().Int32Value());
    if (fd < 0) return Error(env, "ERR_DSM_SYSTEM", std::string("dup of the data channel's socket failed: ") + strerror(errno));
    Napi::Object o = info[1].As<Napi::Object>();
    dsm::DataChannel::Config c{};
    c.clusterId = o.Get("clusterId").As<Napi::Number>().Uint32Value();
    c.protocolVersion = uint8_t(o.Get("protocolVersion").As<Napi::Number>().Uint32Value());
    c.replyType = uint8_t(o.Get("replyType").As<Napi::Number>().Uint32Value());
    c.heartbeatType = uint8_t(o.Get("heartbeatType").As<Napi::Number>().Uint32Value());
    c.maxFrame = o.Get("maxFrame").As<Napi::Number>().Uint32Value();
    c.heartbeatMs = o.Get("heartbeatMs").As<Napi::Number>().Uint32Value();
    uint32_t id = d->OpenDataChannel(fd, c, [](void* a) { uv_async_send(static_cast<uv_async_t*>(a)); }, &bridge_->async);
    return Napi::Number::New(env, id);
  }
  Napi::Value CloseDataChannel(const Napi::CallbackInfo& info) {
    Need(info.Env())->CloseDataChannel(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }
  // takeData() -> Float64Array of [channel, request id (0xffffffff: channel closed), newest version] triples
  Napi::Value TakeData(const Napi::CallbackInfo& info) {
    std::vector<dsm::DataDone> done;
    Need(info.Env())->TakeDataDone(&done);
    auto arr = Napi::Float64Array::New(info.Env(), done.size() * 3);
    for (size_t i = 0; i < done.size(); i++) {
      arr[i * 3] = done[i].channel;
      arr[i * 3 + 1] = done[i].reqId;
      arr[i * 3 + 2] = double(done[i].newest);
    }
    return arr;
  }
  Napi::Value LastReadFault(const Napi::CallbackInfo& info) {
    uint32_t p = Need(info.Env())->lastReadFault();
    return Napi::Number::New(info.Env(), p == UINT32_MAX ? -1.0 : double(p));
  }
  // copyCommittedPages(pages: Uint32Array, out: Uint8Array (pages.length pages))
  Napi::Value CopyCommittedPages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) {
      NAPI_THROW(Napi::TypeError::New(env, "copyCommittedPages: pages and out must be typed arrays"), env.Undefined());
    }
    auto pages = info[0].As<Napi::Uint32Array>();
    auto out = info[1].As<Napi::Uint8Array>();
    const uint32_t n = uint32_t(pages.ElementLength());
    if (out.ByteLength() != size_t(n) * d->region().pageSize()) {
      NAPI_THROW(Napi::RangeError::New(env, "copyCommittedPages: out must hold exactly one page per page number"), env.Undefined());
    }
    for (uint32_t i = 0; i < n; i++) {
      if (pages[i] >= d->region().numPages()) {
        NAPI_THROW(Napi::RangeError::New(env, "copyCommittedPages: page number outside the region"), env.Undefined());
      }
    }
    d->CopyCommittedPages(pages.Data(), n, out.Data());
    return env.Undefined();
  }
  Napi::Value Invalidate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    uint32_t page = PageArg(env, d, info[0]);
    return Napi::Boolean::New(env, d->Invalidate(page, uint64_t(info[1].As<Napi::Number>().Int64Value()),
                                                 uint16_t(info[2].As<Napi::Number>().Uint32Value())));
  }
  Napi::Value CopyCommitted(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    uint32_t page = PageArg(env, d, info[0]);
    auto buf = Napi::Buffer<uint8_t>::New(env, d->region().pageSize());
    d->CopyCommitted(page, buf.Data());
    return buf;
  }
  Napi::Value PageState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    return Napi::Number::New(env, d->pages().state(PageArg(env, d, info[0])));
  }
  // Test hook: reads the app view from the calling thread. From the service thread this
  // must abort with a message (the fault could never be resolved).
  Napi::Value TouchAppView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    uint32_t page = PageArg(env, d, info[0]);
    volatile uint8_t* p = d->region().AppPage(page);
    return Napi::Number::New(env, *p);
  }
  Napi::Value MeasureFaultFloor(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), dsm::MeasureFaultFloorNs(info[0].As<Napi::Number>().Uint32Value(),
                                                                  info[1].As<Napi::Number>().Uint32Value()));
  }
  Napi::Value MeasureMprotect(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), dsm::MeasureMprotectNs(info[0].As<Napi::Number>().Uint32Value(),
                                                                info[1].As<Napi::Number>().Uint32Value()));
  }

  Napi::Value MeasureMalloc(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), dsm::MeasureMallocNs(info[0].As<Napi::Number>().Uint32Value(),
                                                              info[1].As<Napi::Number>().Uint32Value(),
                                                              info[2].As<Napi::Number>().Uint32Value()));
  }

  Napi::Value RunTransaction(const Napi::CallbackInfo& info) {
    return dsm::app_interrupt::RunTransaction(info, Need(info.Env()));
  }
  Napi::Value PostCommit(const Napi::CallbackInfo& info) {
    dsm::Dsm* d = Need(info.Env());
    bool ok = d->channel().Post(dsm::CommitChannel::Kind(info[0].As<Napi::Number>().Uint32Value()));
    if (ok && appBridge_) uv_ref(reinterpret_cast<uv_handle_t*>(&appBridge_->async));
    return Napi::Boolean::New(info.Env(), ok);
  }
  Napi::Value TakeCommitReply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t time = 0;
    uint32_t s = Need(env)->channel().TakeReply(&time);
    if (!s) return env.Null();
    if (appBridge_) uv_unref(reinterpret_cast<uv_handle_t*>(&appBridge_->async));
    Napi::Array a = Napi::Array::New(env, 2);
    a.Set(0u, Napi::Number::New(env, s));
    a.Set(1u, Napi::Number::New(env, double(time)));
    return a;
  }
  Napi::Value TakeCommitRequest(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), Need(info.Env())->channel().Take());
  }
  Napi::Value ReplyCommit(const Napi::CallbackInfo& info) {
    Need(info.Env())->channel().Reply(dsm::CommitChannel::Status(info[0].As<Napi::Number>().Uint32Value()),
                                      uint64_t(info[1].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  }
  Napi::Value InterruptApp(const Napi::CallbackInfo& info) {
    dsm::app_interrupt::Request();
    return info.Env().Undefined();
  }
  Napi::Value MarkLost(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    d->MarkLost(PageArg(env, d, info[0]));
    dsm::app_interrupt::Request();
    return env.Undefined();
  }
  Napi::Value TakeLost(const Napi::CallbackInfo& info) {
    dsm::Dsm* d = g_dsm;
    return Napi::Number::New(info.Env(), d ? double(d->TakeLost()) : -1.0);
  }

  // Views of the page table for the calling environment (the service reads owners and
  // versions to route requests). Valid until the region closes.
  Napi::Value PageTable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    dsm::PageTable& pt = d->pages();
    uint32_t n = d->region().numPages();
    Napi::Object out = Napi::Object::New(env);
    out.Set("states", Napi::Uint8Array::New(env, n, External(env, pt.states(), n), 0));
    out.Set("owners", Napi::Uint16Array::New(env, n, External(env, pt.owners(), size_t(n) * 2), 0));
    out.Set("versions", Napi::TypedArrayOf<uint64_t>::New(env, n, External(env, pt.versions(), size_t(n) * 8), 0, napi_biguint64_array));
    return out;
  }
  // Test hook: a real SIGSEGV outside the region (the null page), which must reach the
  // previous handler and kill the process as without the DSM.
  Napi::Value FaultOutsideRegion(const Napi::CallbackInfo& info) {
    volatile uint8_t* p = reinterpret_cast<volatile uint8_t*>(uintptr_t(info[0].As<Napi::Number>().Int64Value()));
    return Napi::Number::New(info.Env(), *p);
  }
  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsm::Dsm* d = Need(env);
    auto a = Napi::Float64Array::New(env, dsm::kCounterCount);
    for (unsigned i = 0; i < dsm::kCounterCount; i++) a[i] = double(d->stats().Get(dsm::Counter(i)));
    return a;
  }

  // ---- helpers ----
  static void OnAsync(uv_async_t* h) {
    auto* b = static_cast<ServiceBridge*>(h->data);
    Napi::Env env(b->env);
    Napi::HandleScope scope(env);
    try {
      b->onRequests.MakeCallback(env.Global(), {});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(b->env, e.Value());
    }
  }

  void DetachBridge() {
    if (!bridge_) return;
    {
      std::lock_guard<std::mutex> g(g_mutex);
      if (g_dsm) {
        g_dsm->ring().SetNotifier(nullptr, nullptr);
        g_dsm->channel().SetServiceNotifier(nullptr, nullptr);
        g_dsm->CloseDataChannels();  // they wake this bridge
        g_dsm->SetServiceThread(pthread_t(), false);
        g_dsm->ring().FailAll();
      }
    }
    ServiceBridge* b = bridge_;
    bridge_ = nullptr;
    b->onRequests.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&b->async),
             [](uv_handle_t* h) { delete static_cast<ServiceBridge*>(h->data); });
  }

  void CloseRegion() {
    if (!owner_) return;
    for (auto& ref : keep_) {
      if (!ref.IsEmpty()) ref.Value().Detach();
    }
    keep_.clear();
    if (!appBuffer_.IsEmpty()) {
      // Views held by the program become empty instead of pointing at unmapped memory.
      appBuffer_.Value().Detach();
      appBuffer_.Reset();
    }
    CloseAppBridge();
    std::lock_guard<std::mutex> g(g_mutex);
    dsm::fault_handler::Detach();
    dsm::app_interrupt::Unbind();
    if (g_dsm) {
      g_dsm->ring().SetNotifier(nullptr, nullptr);
      delete g_dsm;
      g_dsm = nullptr;
    }
    owner_ = false;
  }

  void CloseAppBridge() {
    if (!appBridge_) return;
    if (g_dsm) g_dsm->channel().SetAppNotifier(nullptr, nullptr);
    ServiceBridge* b = appBridge_;
    appBridge_ = nullptr;
    b->onRequests.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&b->async),
             [](uv_handle_t* h) { delete static_cast<ServiceBridge*>(h->data); });
  }

  void Cleanup() {
    DetachBridge();
    if (owner_) {
      keep_.clear();
      appBuffer_.Reset();
      CloseAppBridge();
      std::lock_guard<std::mutex> g(g_mutex);
      dsm::fault_handler::Detach();
      dsm::app_interrupt::Unbind();
      delete g_dsm;
      g_dsm = nullptr;
      owner_ = false;
    }
  }

  dsm::Dsm* Need(Napi::Env env) {
    dsm::Dsm* d = g_dsm;
    if (!d) {
      Napi::Error e = Napi::Error::New(env, "the DSM node is closed");
      e.Set("code", Napi::String::New(env, "ERR_DSM_CLOSED"));
      throw e;
    }
    return d;
  }
  static uint32_t PageArg(Napi::Env env, dsm::Dsm* d, Napi::Value v) {
    double p = v.As<Napi::Number>().DoubleValue();
    if (!(p >= 0 && p < d->region().numPages()) || p != double(uint32_t(p))) {
      throw Napi::RangeError::New(env, "page number out of range");
    }
    return uint32_t(p);
  }
  static Napi::Value Error(Napi::Env env, const char* code, const std::string& msg) {
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("code", Napi::String::New(env, code));
    throw e;
  }
  static Napi::ArrayBuffer External(Napi::Env env, void* p, size_t n) {
    return Napi::ArrayBuffer::New(env, p, n, [](Napi::Env, void*) {});
  }
  // Keeps a view's buffer so close() can detach it (programs may still hold the view).
  Napi::ArrayBuffer Keep(Napi::ArrayBuffer b) {
    keep_.push_back(Napi::Persistent(b));
    return b;
  }
  static Napi::Value Pages(Napi::Env env, const std::vector<uint32_t>& v) {
    auto a = Napi::Uint32Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a[i] = v[i];
    return a;
  }

  bool owner_ = false;
  Napi::Reference<Napi::ArrayBuffer> appBuffer_;
  std::vector<Napi::Reference<Napi::ArrayBuffer>> keep_;
  ServiceBridge* bridge_ = nullptr;     // service environment: faults and commit requests
  ServiceBridge* appBridge_ = nullptr;  // app environment: commit replies
};

}  // namespace

NODE_API_ADDON(Addon)
