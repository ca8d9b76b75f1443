// Bindings called on the service thread: attaching to the process's Dsm, answering faults,
// installing and invalidating pages, serving committed contents, data channels, and the
// service's side of the commit channel. Argument conversion only.
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "addon_calls.h"
#include "addon_env.h"
#include "app_interrupt.h"
#include "js_args.h"
#include "lease_alarm.h"

namespace dsm {
namespace addon {
namespace {

Napi::Value AttachService(const Napi::CallbackInfo& info) {
  AddonEnv::Of(info.Env()).AttachService(info.Env(), info[0].As<Napi::Function>());
  return info.Env().Undefined();
}
Napi::Value DetachService(const Napi::CallbackInfo& info) {
  AddonEnv::Of(info.Env()).DetachService();
  return info.Env().Undefined();
}

Napi::Value TakeRequests(const Napi::CallbackInfo& info) {
  Request reqs[RequestRing::kSlots];
  uint32_t n = AddonEnv::Need(info.Env())->ring().Take(reqs, RequestRing::kSlots);
  auto arr = Napi::Uint32Array::New(info.Env(), size_t(n) * 4);
  for (uint32_t i = 0; i < n; i++) {
    arr[i * 4] = reqs[i].ticket;
    arr[i * 4 + 1] = reqs[i].page;
    arr[i * 4 + 2] = reqs[i].flags;
    arr[i * 4 + 3] = reqs[i].reqId;
  }
  return arr;
}
Napi::Value CompleteRequest(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->ring().Complete(U32(info[0]));
  return info.Env().Undefined();
}

Napi::Value Install(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  uint32_t page = PageArg(env, d, info[0]);
  const uint8_t* data = nullptr;
  if (info[1].IsTypedArray()) {
    auto a = info[1].As<Napi::Uint8Array>();
    if (a.ByteLength() != d->region().pageSize()) throw Napi::RangeError::New(env, "install: data must be exactly one page");
    data = a.Data();
  }
  return Napi::Boolean::New(env, d->Install(page, data, U64(info[2]), uint16_t(U32(info[3]))));
}

// Whether `v` is a typed array of element type `t`: As<Napi::Uint32Array>() on another
// kind would read its bytes with the wrong element size, past its end.
static bool IsTypedArrayOf(const Napi::Value& v, napi_typedarray_type t) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == t;
}

// Pages with a version and an owner each (installPages, invalidatePages): three typed
// arrays of one length, every page in the region and every version a whole number of 0 or
// more (converting a negative or NaN double to uint64_t would be undefined behaviour).
// Checked whole before anything changes.
struct PageVersionArgs {
  Napi::Uint32Array pages;
  Napi::Uint16Array owners;
  std::vector<uint64_t> versions;
  uint32_t count;
};

static PageVersionArgs ReadPageVersions(Napi::Env env, Dsm* d, const Napi::CallbackInfo& info, const char* fn) {
  auto fail = [&](const char* what) { return std::string(fn) + ": " + what; };
  if (!IsTypedArrayOf(info[0], napi_uint32_array) || !IsTypedArrayOf(info[1], napi_float64_array) || !IsTypedArrayOf(info[2], napi_uint16_array)) {
    throw Napi::TypeError::New(env, fail("pages, versions and owners must be typed arrays: a Uint32Array, a Float64Array and a Uint16Array"));
  }
  PageVersionArgs a{info[0].As<Napi::Uint32Array>(), info[2].As<Napi::Uint16Array>(), {}, 0};
  auto versions = info[1].As<Napi::Float64Array>();
  a.count = uint32_t(a.pages.ElementLength());
  if (versions.ElementLength() != a.count || a.owners.ElementLength() != a.count) {
    throw Napi::RangeError::New(env, fail("pages, versions and owners differ in length"));
  }
  a.versions.resize(a.count);
  for (uint32_t i = 0; i < a.count; i++) {
    if (a.pages[i] >= d->region().numPages()) throw Napi::RangeError::New(env, fail("page number outside the region"));
    if (!(versions[i] >= 0 && versions[i] <= kMaxSafeInteger)) throw Napi::RangeError::New(env, fail("a version is not a whole number of 0 or more"));
    a.versions[i] = uint64_t(versions[i]);
  }
  return a;
}

// installPages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array,
//              data: Uint8Array (pages.length pages) | null) -> installed count
Napi::Value InstallPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  PageVersionArgs a = ReadPageVersions(env, d, info, "installPages");
  const uint8_t* data = nullptr;
  if (info[3].IsTypedArray()) {
    auto bytes = info[3].As<Napi::Uint8Array>();
    if (bytes.ByteLength() != size_t(a.count) * d->region().pageSize()) {
      throw Napi::RangeError::New(env, "installPages: data must hold exactly one page per page number");
    }
    data = bytes.Data();
  }
  return Napi::Number::New(env, d->InstallPages(a.pages.Data(), a.versions.data(), a.owners.Data(), a.count, data));
}

Napi::Value Invalidate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  uint32_t page = PageArg(env, d, info[0]);
  return Napi::Boolean::New(env, d->Invalidate(page, U64(info[1]), uint16_t(U32(info[2]))));
}

// invalidatePages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array) -> doomed
Napi::Value InvalidatePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  PageVersionArgs a = ReadPageVersions(env, d, info, "invalidatePages");
  return Napi::Boolean::New(env, d->InvalidatePages(a.pages.Data(), a.versions.data(), a.owners.Data(), a.count));
}

// applyCommit(time, owner, pages: Uint32Array, changes: Uint8Array): -1 malformed, 1 doomed, 0.
Napi::Value ApplyCommit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  if (!info[2].IsTypedArray() || !info[3].IsTypedArray()) throw Napi::TypeError::New(env, "applyCommit: pages and changes must be typed arrays");
  auto pages = info[2].As<Napi::Uint32Array>();
  auto changes = info[3].As<Napi::Uint8Array>();
  return Napi::Number::New(env, d->ApplyCommit(U64(info[0]), uint16_t(U32(info[1])), pages.Data(), uint32_t(pages.ElementLength()),
                                               changes.Data(), changes.ByteLength()));
}

// setBackups(ids: Uint16Array)
Napi::Value SetBackups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "setBackups: ids must be a Uint16Array");
  auto ids = info[0].As<Napi::Uint16Array>();
  AddonEnv::Need(env)->SetBackups(ids.Data(), uint32_t(ids.ElementLength()));
  return env.Undefined();
}

Napi::Value CopyCommitted(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  uint32_t page = PageArg(env, d, info[0]);
  auto buf = Napi::Buffer<uint8_t>::New(env, d->region().pageSize());
  d->CopyCommitted(page, buf.Data());
  return buf;
}

// The arguments of copyCommittedPages and copyCurrentPages: page numbers inside the region,
// and an out array of exactly one page per number.
struct PagesAndOut {
  const uint32_t* pages;
  uint32_t count;
  uint8_t* out;
};
static PagesAndOut PagesAndOutArgs(const Napi::CallbackInfo& info, Dsm* d, const char* name) {
  Napi::Env env = info.Env();
  if (!IsTypedArrayOf(info[0], napi_uint32_array) || !IsTypedArrayOf(info[1], napi_uint8_array)) {
    throw Napi::TypeError::New(env, std::string(name) + ": pages must be a Uint32Array and out a Uint8Array");
  }
  auto pages = info[0].As<Napi::Uint32Array>();
  auto out = info[1].As<Napi::Uint8Array>();
  const uint32_t n = uint32_t(pages.ElementLength());
  if (out.ByteLength() != size_t(n) * d->region().pageSize()) {
    throw Napi::RangeError::New(env, std::string(name) + ": out must hold exactly one page per page number");
  }
  for (uint32_t i = 0; i < n; i++) {
    if (pages[i] >= d->region().numPages()) throw Napi::RangeError::New(env, std::string(name) + ": page number outside the region");
  }
  return {pages.Data(), n, out.Data()};
}

// copyCommittedPages(pages: Uint32Array, out: Uint8Array (pages.length pages))
Napi::Value CopyCommittedPages(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Need(info.Env());
  const PagesAndOut a = PagesAndOutArgs(info, d, "copyCommittedPages");
  d->CopyCommittedPages(a.pages, a.count, a.out);
  return info.Env().Undefined();
}

// copyCurrentPages(pages: Uint32Array, out: Uint8Array (pages.length pages))
Napi::Value CopyCurrentPages(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Need(info.Env());
  const PagesAndOut a = PagesAndOutArgs(info, d, "copyCurrentPages");
  d->CopyCurrentPages(a.pages, a.count, a.out);
  return info.Env().Undefined();
}

Napi::Value PageState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  return Napi::Number::New(env, d->pages().state(PageArg(env, d, info[0])));
}

// Views of the page table for the calling environment (the service reads owners and
// versions to route requests). Valid until the region closes.
Napi::Value PageTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  dsm::PageTable& pt = d->pages();
  uint32_t n = d->region().numPages();
  Napi::Object out = Napi::Object::New(env);
  out.Set("states", Napi::Uint8Array::New(env, n, External(env, pt.states(), n), 0));
  out.Set("owners", Napi::Uint16Array::New(env, n, External(env, pt.owners(), size_t(n) * 2), 0));
  out.Set("versions", Napi::TypedArrayOf<uint64_t>::New(env, n, External(env, pt.versions(), size_t(n) * 8), 0, napi_biguint64_array));
  return out;
}

Napi::Value Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  auto a = Napi::Float64Array::New(env, kCounterCount);
  for (unsigned i = 0; i < kCounterCount; i++) a[i] = double(d->stats().Get(Counter(i)));
  return a;
}

// openDataChannel(fd, { clusterId, protocolVersion, replyType, heartbeatType, maxFrame,
// heartbeatMs, serve?: { requestType, me, member } }) -> id. The socket is duplicated: the
// caller closes its own handle. With `serve`, the owner's end (data_channel.h).
Napi::Value OpenDataChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  LoopWakeup* w = AddonEnv::Of(env).serviceWakeup();
  if (!w) ThrowCoded(env, "ERR_DSM_SYSTEM", "data channels belong to the service thread");
  int fd = dup(info[0].As<Napi::Number>().Int32Value());
  if (fd < 0) ThrowCoded(env, "ERR_DSM_SYSTEM", std::string("dup of the data channel's socket failed: ") + strerror(errno));
  Napi::Object o = info[1].As<Napi::Object>();
  DataChannel::Config c{};
  c.clusterId = U32(o.Get("clusterId"));
  c.protocolVersion = uint8_t(U32(o.Get("protocolVersion")));
  c.replyType = uint8_t(U32(o.Get("replyType")));
  c.heartbeatType = uint8_t(U32(o.Get("heartbeatType")));
  c.maxFrame = U32(o.Get("maxFrame"));
  c.heartbeatMs = U32(o.Get("heartbeatMs"));
  if (o.Has("serve") && o.Get("serve").IsObject()) {
    Napi::Object s = o.Get("serve").As<Napi::Object>();
    c.serve = true;
    c.requestType = uint8_t(U32(s.Get("requestType")));
    c.me = uint16_t(U32(s.Get("me")));
    c.member = uint16_t(U32(s.Get("member")));
  }
  return Napi::Number::New(env, d->OpenDataChannel(fd, c, LoopWakeup::Send, w));
}
// routeFaults(owner, channel id, { requestType, requester }) -> bool
Napi::Value RouteFaults(const Napi::CallbackInfo& info) {
  Napi::Object o = info[2].As<Napi::Object>();
  FaultRoutes::Wire w{};
  w.requestType = uint8_t(U32(o.Get("requestType")));
  w.requester = uint16_t(U32(o.Get("requester")));
  return Napi::Boolean::New(info.Env(), AddonEnv::Need(info.Env())->RouteFaults(U32(info[0]), U32(info[1]), w));
}
// faultsScanning(on): a scan is on (its faults go to the service and its read-ahead).
Napi::Value FaultsScanning(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->routes().SetScanning(info[0].ToBoolean());
  return info.Env().Undefined();
}
// sendOnChannel(id, type, payload: Uint8Array) -> bool
Napi::Value SendOnChannel(const Napi::CallbackInfo& info) {
  Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
  const bool ok = AddonEnv::Need(info.Env())->SendOnChannel(U32(info[0]), uint8_t(U32(info[1])), b.Data(), b.ByteLength());
  return Napi::Boolean::New(info.Env(), ok);
}
// takeForwarded(id) -> Buffer of the page requests the channel's owner end handed over (22 bytes each)
Napi::Value TakeForwarded(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> out;
  AddonEnv::Need(info.Env())->TakeForwarded(U32(info[0]), &out);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
}
// setServing({ leaseMs, servable }): the rules of answering page requests natively (Dsm::ServeCommitted).
// leaseMs: how long the commit lease runs from now (Infinity: for good); servable: the time up to which commits went out.
Napi::Value SetServing(const Napi::CallbackInfo& info) {
  Dsm* d = AddonEnv::Need(info.Env());
  Napi::Object o = info[0].As<Napi::Object>();
  if (o.Has("leaseMs")) {
    const double ms = o.Get("leaseMs").As<Napi::Number>().DoubleValue();
    d->SetServingLease(ms >= 9.2e18 ? INT64_MAX : ms > 0 ? int64_t(ms) : 0);
    lease_alarm::Arm(d->servingUntilMs());
  }
  if (o.Has("servable")) d->SetServable(uint64_t(o.Get("servable").As<Napi::Number>().DoubleValue()));
  return info.Env().Undefined();
}
Napi::Value CloseDataChannel(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->CloseDataChannel(U32(info[0]));
  return info.Env().Undefined();
}
// takeData() -> Float64Array of [channel, request id (0xffffffff: channel closed), newest version (closed: why, ChannelEnd)] triples
Napi::Value TakeData(const Napi::CallbackInfo& info) {
  std::vector<DataDone> done;
  AddonEnv::Need(info.Env())->TakeDataDone(&done);
  auto arr = Napi::Float64Array::New(info.Env(), done.size() * 3);
  for (size_t i = 0; i < done.size(); i++) {
    arr[i * 3] = done[i].channel;
    arr[i * 3 + 1] = done[i].reqId;
    arr[i * 3 + 2] = double(done[i].newest);
  }
  return arr;
}
Napi::Value LastReadFault(const Napi::CallbackInfo& info) {
  uint32_t p = AddonEnv::Need(info.Env())->lastReadFault();
  return Napi::Number::New(info.Env(), p == UINT32_MAX ? -1.0 : double(p));
}

Napi::Value TakeCommitRequest(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), AddonEnv::Need(info.Env())->channel().Take());
}
Napi::Value ReplyCommit(const Napi::CallbackInfo& info) {
  AddonEnv::Need(info.Env())->channel().Reply(CommitChannel::Status(U32(info[0])), U64(info[1]));
  return info.Env().Undefined();
}
Napi::Value InterruptApp(const Napi::CallbackInfo& info) {
  app_interrupt::Request();
  return info.Env().Undefined();
}
Napi::Value MarkLost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Dsm* d = AddonEnv::Need(env);
  d->MarkLost(PageArg(env, d, info[0]));
  app_interrupt::Request();
  return env.Undefined();
}
// refuseRunFaults(on: boolean) -> faults woken. On, the live transaction is doomed and
// interrupted: a run that touches no more pages is stopped as any zombie is.
Napi::Value RefuseRunFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool on = info[0].ToBoolean().Value();
  const uint32_t woken = AddonEnv::Need(env)->RefuseRunFaults(on);
  if (on) app_interrupt::Request();
  return Napi::Number::New(env, woken);
}

}  // namespace

void DefineServiceCalls(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> calls[] = {
      {"attachService", AttachService},
      {"detachService", DetachService},
      {"takeRequests", TakeRequests},
      {"completeRequest", CompleteRequest},
      {"install", Install},
      {"installPages", InstallPages},
      {"invalidate", Invalidate},
      {"invalidatePages", InvalidatePages},
      {"applyCommit", ApplyCommit},
      {"setBackups", SetBackups},
      {"copyCommitted", CopyCommitted},
      {"copyCommittedPages", CopyCommittedPages},
      {"copyCurrentPages", CopyCurrentPages},
      {"pageState", PageState},
      {"pageTable", PageTable},
      {"counters", Counters},
      {"openDataChannel", OpenDataChannel},
      {"closeDataChannel", CloseDataChannel},
      {"sendOnChannel", SendOnChannel},
      {"takeForwarded", TakeForwarded},
      {"setServing", SetServing},
      {"routeFaults", RouteFaults},
      {"faultsScanning", FaultsScanning},
      {"takeData", TakeData},
      {"lastReadFault", LastReadFault},
      {"takeCommitRequest", TakeCommitRequest},
      {"replyCommit", ReplyCommit},
      {"interruptApp", InterruptApp},
      {"markLost", MarkLost},
      {"refuseRunFaults", RefuseRunFaults},
  };
  for (const auto& [name, fn] : calls) exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace addon
}  // namespace dsm
