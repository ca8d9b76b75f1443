// Native tests of data channels: the requester's end (replies into the region), the
// faulting threads' requests on it, and the owner's end (requests answered natively).
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "../../native/dsm.h"
#include "check.h"
#include "dsm_fixture.h"

using namespace dsm;
using namespace dsm_test;

// Writes a frame: u32 length | version 2 | u32 cluster | type | body.
static void PutFrame(int fd, uint32_t cluster, uint8_t type, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> f(10 + body.size());
  const uint32_t len = uint32_t(6 + body.size());
  memcpy(&f[0], &len, 4);
  f[4] = 2;
  memcpy(&f[5], &cluster, 4);
  f[9] = type;
  if (!body.empty()) memcpy(f.data() + 10, body.data(), body.size());
  CHECK(write(fd, f.data(), f.size()) == ssize_t(f.size()));
}

static std::vector<DataDone> WaitDone(Dsm* d, size_t n) {
  std::vector<DataDone> all;
  for (int i = 0; i < 5000 && all.size() < n; i++) {
    d->TakeDataDone(&all);
    if (all.size() < n) usleep(1000);
  }
  return all;
}

TEST(data_channel_receives_replies_into_the_region_and_closes_on_bad_frames) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  for (uint32_t p = 300; p < 303; p++) d->Invalidate(p, 7, 1);
  DataChannel::Config c{0xabcd, 2, 24, 0, 64 << 20, 100};
  uint32_t id = d->OpenDataChannel(sv[1], c, nullptr, nullptr);
  // A reply for pages 300..302, version 7: request 42.
  std::vector<uint8_t> body(13 + 3 * 14 + 3 * 4096);
  uint32_t req = 42, first = 300, n = 3;
  memcpy(&body[0], &req, 4);
  memcpy(&body[4], &first, 4);
  body[8] = 0;
  memcpy(&body[9], &n, 4);
  for (uint32_t i = 0; i < 3; i++) {
    uint32_t page = 300 + i;
    uint64_t version = 7;
    uint16_t owner = 1;
    memcpy(&body[13 + i * 14], &page, 4);
    memcpy(&body[13 + i * 14 + 4], &version, 8);
    memcpy(&body[13 + i * 14 + 12], &owner, 2);
    memset(&body[13 + 3 * 14 + i * 4096], int(0x30 + i), 4096);
  }
  PutFrame(sv[0], 0xabcd, 0, {});  // a heartbeat is skipped
  PutFrame(sv[0], 0xabcd, 24, body);
  auto done = WaitDone(d, 1);
  CHECK(done.size() == 1 && done[0].channel == id && done[0].reqId == 42 && done[0].newest == 7);
  CHECK(d->pages().state(300) == kRead && d->pages().version(302) == 7);
  volatile uint8_t* app = d->region().app();
  CHECK(app[300 * 4096] == 0x30 && app[302 * 4096 + 4095] == 0x32);
  // A frame of another cluster closes the channel; nothing is installed from it.
  d->Invalidate(303, 8, 1);
  PutFrame(sv[0], 0x1111, 24, body);
  done = WaitDone(d, 1);
  CHECK(done.size() == 1 && done[0].reqId == kChannelClosed && done[0].newest == kBadFrame);
  CHECK(d->pages().state(303) == kInvalid);
  d->CloseDataChannel(id);
  close(sv[0]);
  // An owner that closes its end (it is leaving) is told apart from a bad frame.
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  id = d->OpenDataChannel(sv[1], c, nullptr, nullptr);
  close(sv[0]);
  done = WaitDone(d, 1);
  CHECK(done.size() == 1 && done[0].channel == id && done[0].reqId == kChannelClosed && done[0].newest == kClosedByPeer);
  d->CloseDataChannel(id);
  CloseDsm(d);
}

// A faulting thread's page request (fault_routes.h): the frame the owner's transport reads,
// none while a scan is on, and none once the channel is closed (its routes go first).
TEST(fault_routes_send_page_requests_on_the_owners_data_channel) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  DataChannel::Config c{0xabcd, 2, 24, 0, 64 << 20, 100000};
  uint32_t id = d->OpenDataChannel(sv[1], c, nullptr, nullptr);
  CHECK(d->routes().Send(1, 300) == 0);  // no route yet
  CHECK(d->RouteFaults(1, id, FaultRoutes::Wire{23, 7}));
  const uint32_t req = d->routes().Send(1, 300);
  CHECK(req >= FaultRoutes::kFirstRequestId);
  uint8_t f[32];
  CHECK(recv(sv[0], f, sizeof f, MSG_WAITALL) == 32);
  uint32_t len, cluster, got, page;
  memcpy(&len, f, 4);
  memcpy(&cluster, f + 5, 4);
  memcpy(&got, f + 10, 4);
  memcpy(&page, f + 14, 4);
  CHECK(len == 28 && f[4] == 2 && cluster == 0xabcd && f[9] == 23);
  CHECK(got == req && page == 300 && f[18] == 1 && f[19] == 0 && f[20] == 7 && f[21] == 0);
  CHECK(f[30] == 0 && f[31] == 2);  // no hops; answer on the data channel
  d->routes().SetScanning(true);
  CHECK(d->routes().Send(1, 301) == 0);
  d->routes().SetScanning(false);
  CHECK(d->routes().Send(2, 301) == 0);  // another owner: no route
  // Node ids are never given twice, so a long-lived cluster's members have large ones: a
  // member past id 255 gets a route too; the page table's "lost" owner never does.
  CHECK(d->RouteFaults(40000, id, FaultRoutes::Wire{23, 7}));
  CHECK(d->routes().Send(40000, 302) >= FaultRoutes::kFirstRequestId);
  CHECK(d->routes().Send(0xfffe, 302) == 0);
  d->CloseDataChannel(id);
  CHECK(d->routes().Send(1, 301) == 0);
  CHECK(d->routes().Send(40000, 301) == 0);
  close(sv[0]);
  CloseDsm(d);
}

// Request ids wrap before the two highest, which a finished request's report would read as
// "requests forwarded" and "channel closed" (data_channel.h) after 2^31 requests.
TEST(fault_request_ids_never_take_the_channel_report_values) {
  CHECK(FaultRoutes::RequestId(0) == FaultRoutes::kFirstRequestId);
  CHECK(FaultRoutes::RequestId(0x7ffffffd) == 0xfffffffdu);
  for (uint64_t n : {0x7ffffff0ull, 0xfffffff0ull}) {
    for (uint64_t k = n; k < n + 32 && k <= 0xffffffffull; k++) {
      const uint32_t r = FaultRoutes::RequestId(uint32_t(k));
      CHECK(r >= FaultRoutes::kFirstRequestId && r != kChannelClosed && r != kRequestsForwarded);
    }
  }
  CHECK(FaultRoutes::RequestId(0x7ffffffe) == FaultRoutes::kFirstRequestId);  // wrapped
}

// A PageRequest payload (lib/service/protocol.ts).
static std::vector<uint8_t> PageRequestBytes(uint32_t reqId, uint32_t page, uint16_t count, uint16_t requester, uint8_t hops = 0,
                                    uint8_t flags = 2) {
  std::vector<uint8_t> b(22, 0);
  memcpy(&b[0], &reqId, 4);
  memcpy(&b[4], &page, 4);
  memcpy(&b[8], &count, 2);
  memcpy(&b[10], &requester, 2);
  b[20] = hops;
  b[21] = flags;
  return b;
}

// The next frame the channel wrote that is not a heartbeat (header included).
static std::vector<uint8_t> NextFrame(int fd) {
  for (;;) {
    std::vector<uint8_t> f(10);
    if (recv(fd, f.data(), 10, MSG_WAITALL) != 10) return {};
    uint32_t len;
    memcpy(&len, f.data(), 4);
    if (len == 6 && f[9] == 0) continue;
    f.resize(4 + size_t(len));
    if (recv(fd, f.data() + 10, f.size() - 10, MSG_WAITALL) != ssize_t(f.size() - 10)) return {};
    return f;
  }
}

// The requests the owner's end handed to the service, once it says there are `n`.
static std::vector<uint8_t> WaitForwarded(Dsm* d, uint32_t id, size_t n) {
  std::vector<uint8_t> all;
  for (int i = 0; i < 5000 && all.size() < n * 22; i++) {
    d->TakeForwarded(id, &all);
    if (all.size() < n * 22) usleep(1000);
  }
  return all;
}

// The owner's end (Config::serve): pages this node owns and holds, whose commits went out,
// are answered from their committed copies while the lease runs; anything else goes to the
// service untouched (it forwards, refuses or answers it over the main connection).
TEST(data_channel_owner_end_serves_requests_within_the_rules_and_hands_over_the_rest) {
  Dsm* d = OpenDsm(16 << 20);
  if (!d) return;
  // Pages 400..402 held here by node 3 (this node) at version 9; 403 is node 4's.
  const uint32_t n = 4;
  uint32_t pages[n] = {400, 401, 402, 403};
  uint64_t versions[n] = {9, 9, 9, 9};
  uint16_t owners[n] = {3, 3, 3, 4};
  std::vector<uint8_t> data(n * 4096);
  for (uint32_t i = 0; i < n; i++) {
    d->Invalidate(pages[i], 9, owners[i]);
    memset(&data[i * 4096], int(0x40 + i), 4096);
  }
  CHECK(d->InstallPages(pages, versions, owners, n, data.data()) == n);
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  DataChannel::Config c{0xabcd, 2, 24, 0, 64 << 20, 100000};
  c.serve = true;
  c.requestType = 23;
  c.me = 3;
  c.member = 7;
  const uint32_t id = d->OpenDataChannel(sv[1], c, nullptr, nullptr);
  d->SetServable(9);
  d->SetServingLease(INT64_MAX);
  // Three pages asked for, three of ours in a row: answered here, 403 left out.
  const uint64_t served = d->stats().Get(kServedByChannel);
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(42, 400, 8, 7));
  std::vector<uint8_t> reply = NextFrame(sv[0]);
  CHECK(reply.size() == 10 + 13 + 3 * 14 + 3 * 4096);
  reply.resize(10 + 13 + 3 * 14 + 3 * 4096);
  uint32_t len, req, first, count, page0;
  uint64_t version2;
  uint16_t owner1;
  memcpy(&len, &reply[0], 4);
  memcpy(&req, &reply[10], 4);
  memcpy(&first, &reply[14], 4);
  memcpy(&count, &reply[19], 4);
  memcpy(&page0, &reply[23], 4);
  memcpy(&owner1, &reply[23 + 14 + 12], 2);
  memcpy(&version2, &reply[23 + 28 + 4], 8);
  CHECK(len == reply.size() - 4 && reply[9] == 24 && req == 42 && first == 400 && reply[18] == 0 && count == 3);
  CHECK(page0 == 400 && owner1 == 3 && version2 == 9);
  const uint8_t* body = &reply[23 + 3 * 14];
  CHECK(body[0] == 0x40 && body[4096 + 17] == 0x41 && body[3 * 4096 - 1] == 0x42);
  CHECK(d->stats().Get(kServedByChannel) == served + 1);
  // Outside the rules, each goes to the service as it came: another node's page; a page
  // whose commit has not gone out yet; a relayed request; one naming another requester; and
  // any request once the lease has run out.
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(43, 403, 1, 7));
  d->SetServable(8);
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(44, 400, 1, 7));
  auto got = WaitForwarded(d, id, 2);
  d->SetServable(9);
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(45, 400, 1, 7, 1));
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(46, 400, 1, 8));
  d->SetServingLease(0);
  PutFrame(sv[0], 0xabcd, 23, PageRequestBytes(47, 401, 1, 7));
  auto rest = WaitForwarded(d, id, 3);
  got.insert(got.end(), rest.begin(), rest.end());
  CHECK(got.size() == 5 * 22);
  for (uint32_t k = 0; k < 5 && got.size() == 5 * 22; k++) {
    uint32_t r;
    memcpy(&r, &got[k * 22], 4);
    CHECK(r == 43 + k);
  }
  CHECK(got.size() == 5 * 22 && memcmp(&got[4 * 22], PageRequestBytes(47, 401, 1, 7).data(), 22) == 0);
  auto done = WaitDone(d, 1);
  CHECK(!done.empty() && done[0].channel == id && done[0].reqId == kRequestsForwarded);
  CHECK(d->stats().Get(kServedByChannel) == served + 1);
  // A frame that is not a page request closes it.
  PutFrame(sv[0], 0xabcd, 24, {});
  done = WaitDone(d, 1);
  bool closed = false;
  for (int i = 0; i < 5000 && !closed; i++) {
    for (auto& x : done) closed = closed || (x.reqId == kChannelClosed && x.newest == kBadFrame);
    if (!closed) {
      usleep(1000);
      d->TakeDataDone(&done);
    }
  }
  CHECK(closed);
  d->CloseDataChannel(id);
  close(sv[0]);
  CloseDsm(d);
}
