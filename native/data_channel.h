// Receives page replies on a connection of their own, straight into the region.
//
// During a remote scan the service thread was the bottleneck: it read every reply into
// JavaScript buffers, joined them into a frame and copied the pages into the region
// (perf: ~60% of its time in that last copy). A data channel is a second connection to a
// page owner, authenticated by the transport like any other, whose socket is then read
// here: each reply's pages are received directly into the invalid region pages they
// replace (the same claim, re-check and grant as Dsm::InstallPages), and the service is
// woken with the finished request ids. Frames are checked as the transport's decoder
// checks them; anything wrong closes the channel (the service then fetches over the main
// connection again).
//
// The owner's end of the same connection is read natively too (Config::serve): page
// requests that the service's rules let go out from here (Dsm::ServeCommitted: a page this
// node owns and holds, its commit broadcast, the lease valid) are answered from the
// committed copies by this thread, without waking the owner's JavaScript; any other is
// handed to the service (TakeForwarded), which answers, forwards or refuses it over the
// main connection as before. A requester slow to read holds up only its own channel: the
// thread waits to write, and TCP holds the requester's next requests back.
#pragma once
#include <atomic>
#include <cstdint>
#include <sys/uio.h>

#include <mutex>
#include <thread>
#include <vector>

namespace dsm {

class Dsm;

struct DataDone {
  uint32_t channel;
  uint32_t reqId;      // kChannelClosed: the channel is gone
  uint64_t newest;     // the newest page version in the reply; for kChannelClosed, a ChannelEnd
};
constexpr uint32_t kChannelClosed = 0xffffffff;
// The owner's end handed page requests to the service: TakeForwarded has them.
constexpr uint32_t kRequestsForwarded = 0xfffffffe;
// Why a channel ended: the owner closed it (it left or stopped: its membership says the
// rest), its connection failed, or it sent something that is not a well-formed reply.
enum ChannelEnd : uint32_t { kClosedByPeer = 0, kConnectionLost = 1, kBadFrame = 2 };

class DataChannel {
 public:
  using Notifier = void (*)(void* arg);
  struct Config {
    uint32_t clusterId;
    uint8_t protocolVersion;
    uint8_t replyType;      // the PageReply message type
    uint8_t heartbeatType;  // the transport's heartbeat frame type
    uint32_t maxFrame;
    uint32_t heartbeatMs;
    // The owner's end: serves the page requests (requestType) of member `member` as node `me`.
    bool serve;
    uint8_t requestType;
    uint16_t me;
    uint16_t member;
  };
  // Takes ownership of `fd` (a connected, authenticated socket).
  DataChannel(Dsm* d, uint32_t id, int fd, const Config& c);
  ~DataChannel() { Stop(); }
  DataChannel(const DataChannel&) = delete;
  DataChannel& operator=(const DataChannel&) = delete;

  void Start(Notifier fn, void* arg);
  // Unblocks and joins the reader; closes the socket.
  void Stop();
  void TakeDone(std::vector<DataDone>* out);
  uint32_t id() const { return id_; }
  const Config& config() const { return cfg_; }
  // Writes a whole frame to the owner (a faulting thread's page request, fault_routes.h):
  // signal-safe, serialised with the reader's heartbeats. A frame only partly written
  // leaves the stream broken: the channel is shut down then (the reader reports it closed).
  bool SendFrame(const uint8_t* p, size_t n);
  // The owner's end: requests handed to the service since the last call (22 bytes each).
  void TakeForwarded(std::vector<uint8_t>* out);

 private:
  void Run();
  // The owner's end: answers requests, or hands them to the service.
  void Serve();
  // Writes all of `iov` (the owner's replies), waiting while the requester reads slowly;
  // false once the connection failed or the channel is stopping.
  bool SendAll(iovec* iov, int count);
  bool ReadExactly(uint8_t* to, size_t len);
  // Reads the next frame's header (its type and payload length); false when the channel
  // failed (reported) or the frame is not of this cluster and protocol.
  bool NextFrame(uint8_t* type, uint32_t* body);
  // Tells the service the channel is gone, and why (unless it is being stopped).
  void Fail(ChannelEnd why);
  // Why the last ReadExactly failed.
  ChannelEnd ReadFailure() const { return eof_ ? kClosedByPeer : kConnectionLost; }
  void Push(DataDone d);
  void SendHeartbeat();
  Dsm* dsm_;
  uint32_t id_;
  int fd_;
  Config cfg_;
  std::atomic<bool> stop_{false};
  int64_t lastBeatMs_ = 0;  // reader thread only
  std::atomic_flag sending_ = ATOMIC_FLAG_INIT;  // one writer at a time
  bool eof_ = false;        // reader thread only: the peer closed the connection
  std::mutex mu_;
  std::vector<DataDone> done_;
  std::vector<uint8_t> forwarded_;
  Notifier notifier_ = nullptr;
  void* notifierArg_ = nullptr;
  std::thread thread_;
};

}  // namespace dsm
