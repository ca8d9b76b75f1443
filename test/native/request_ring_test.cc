// Native tests of the request ring (faulting threads' page requests to the service thread)
// and the wake-ups between threads, with real threads.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <utility>
#include <vector>

#include "../../native/request_ring.h"
#include "../../native/wakeup.h"
#include "check.h"

using namespace dsm;

TEST(request_ring_wakes_waiters_from_another_thread) {
  static RequestRing ring;
  static std::atomic<int> pokes{0};
  ring.SetNotifier([](void*) { pokes++; }, nullptr);
  std::vector<std::thread> producers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 80; i++) producers.emplace_back([&, i] { ok += ring.PostAndWait(i, 0) ? 1 : 0; });
  int served = 0;
  while (served < 80) {
    Request r[RequestRing::kSlots];
    uint32_t n = ring.Take(r, RequestRing::kSlots);
    for (uint32_t k = 0; k < n; k++) ring.Complete(r[k].ticket);
    served += int(n);
  }
  for (auto& t : producers) t.join();
  CHECK(ok == 80);
  CHECK(pokes >= 1);
  ring.SetNotifier(nullptr, nullptr);
  CHECK(!ring.PostAndWait(1, 0));  // no consumer: refuses instead of sleeping forever
}

// The consumer detaches while a producer is between claiming a slot and publishing it: the
// producer must be answered "no service" instead of sleeping forever.
TEST(request_ring_fails_a_slot_being_filled_when_the_consumer_leaves) {
  static RequestRing ring;
  ring.SetNotifier([](void*) {}, nullptr);
  const uint32_t slot = ring.Claim();
  CHECK(slot != RequestRing::kNoSlot);
  ring.SetNotifier(nullptr, nullptr);
  ring.FailAll();
  std::promise<bool> answered;
  std::future<bool> answer = answered.get_future();
  std::thread producer([&] { answered.set_value(ring.Publish(slot, 7, 0) && ring.Wait(slot)); });
  const bool returned = answer.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  CHECK(returned);
  if (!returned) {
    producer.detach();  // asleep for good: the bug this test is about
    return;
  }
  CHECK(!answer.get());
  producer.join();
  // The slot is free again: a consumer attaching later gets every slot.
  ring.SetNotifier([](void*) {}, nullptr);
  std::thread again([&] { CHECK(ring.PostAndWait(8, 0)); });
  uint32_t served = 0;
  while (!served) {
    Request r[RequestRing::kSlots];
    served = ring.Take(r, RequestRing::kSlots);
    for (uint32_t k = 0; k < served; k++) ring.Complete(r[k].ticket);
    if (!served) sched_yield();
  }
  again.join();
  ring.SetNotifier(nullptr, nullptr);
}

// A request answered just before the consumer detaches keeps its answer: FailAll must not
// turn a completed slot into a failed one (its faulting thread would abort for nothing).
TEST(request_ring_detach_keeps_answers_already_given) {
  static RequestRing ring;
  ring.SetNotifier([](void*) {}, nullptr);
  const uint32_t slot = ring.Claim();
  CHECK(slot != RequestRing::kNoSlot);
  CHECK(ring.Publish(slot, 3, 0));
  Request r[RequestRing::kSlots];
  CHECK(ring.Take(r, RequestRing::kSlots) == 1);
  ring.Complete(r[0].ticket);
  ring.FailAll();
  CHECK(ring.Wait(slot));
}

// A ticket names one request: an answer for an earlier request of the same slot (given late,
// after its thread was answered another way and the slot taken again) wakes nobody, and
// CompleteTaken answers only the requests whose page it is told is answered.
TEST(request_ring_tickets_name_one_request) {
  static RequestRing ring;
  ring.SetNotifier([](void*) {}, nullptr);
  Request r[RequestRing::kSlots];
  auto post = [&](uint32_t page) {
    const uint32_t slot = ring.Claim();
    CHECK(slot != RequestRing::kNoSlot);
    CHECK(ring.Publish(slot, page, 0));
    CHECK(ring.Take(r, RequestRing::kSlots) == 1);
    CHECK((r[0].ticket & (RequestRing::kSlots - 1)) == slot);
    return std::make_pair(slot, r[0].ticket);
  };
  auto [slot, first] = post(5);
  ring.CompleteTaken([](uint32_t page) { return page == 5; },
                     [&](const uint32_t* t, uint32_t n) {
                       CHECK(n == 1 && t[0] == first);
                       ring.Complete(t[0]);
                     });
  CHECK(ring.Wait(slot));
  auto [again, second] = post(6);
  CHECK(again == slot);  // the free slot is taken again, in a new turn
  CHECK(second != first);
  ring.Complete(first);  // the late answer for page 5
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    CHECK(ring.Wait(again));
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the waiter's polling
  CHECK(!woke.load());
  ring.CompleteTaken([](uint32_t page) { return page == 5; }, [&](const uint32_t*, uint32_t n) { CHECK(n == 0); });
  ring.Complete(second);
  waiter.join();
  CHECK(woke.load());
  ring.SetNotifier(nullptr, nullptr);
}

// Detaching the consumer waits for a wake-up in progress: the caller frees what the
// notifier's argument points to next (the addon closes its uv_async handle).
TEST(request_ring_detach_waits_for_a_wakeup_in_progress) {
  static RequestRing ring;
  static std::atomic<int> entered{0};
  static std::atomic<bool> release{false};
  ring.SetNotifier([](void*) {
    entered++;
    while (!release) sched_yield();
  }, nullptr);
  std::thread producer([&] { CHECK(!ring.PostAndWait(1, 0)); });
  while (!entered) sched_yield();
  std::atomic<bool> detached{false};
  std::thread consumer([&] {
    ring.SetNotifier(nullptr, nullptr);
    detached = true;
    ring.FailAll();
  });
  // Passing never depends on this pause; a detach that does not wait is caught by it.
  usleep(200 * 1000);
  CHECK(!detached);
  release = true;
  consumer.join();
  producer.join();
  CHECK(detached);
}

// A sender always calls a function with its own argument, even while the pair is being
// replaced and removed under it.
TEST(wakeup_never_mixes_one_pair_with_another) {
  static Wakeup w;
  static int a, b;
  static std::atomic<int> mixed{0}, calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  // Senders back to back: Set() must neither wait on them for long (it waits only for
  // senders that may hold the old pair) nor free a pair one of them still runs.
  for (int i = 0; i < 3; i++) {
    senders.emplace_back([&] {
      while (!stop) w.Send();
    });
  }
  for (int i = 0; i < 20000; i++) {
    w.Set([](void* x) { calls++; if (x != &a) mixed++; }, &a);
    w.Set([](void* x) { calls++; if (x != &b) mixed++; }, &b);
    w.Set(nullptr, nullptr);
  }
  stop = true;
  for (auto& t : senders) t.join();
  CHECK(mixed == 0);
  CHECK(!w.Send());
}
