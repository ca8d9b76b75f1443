// Read-only transactions under durability 'disk'. A commit reaches the other members as soon
// as it is made, before a page server has it on disk, and a read-only transaction commits
// here without a message: acknowledged at once, it could return a value that never became
// durable. After SIGKILL of every process (the page server too) the cluster started again
// from the store lacked it, while the program had been told it was read: the whole-cluster
// crash schedule (test/history) found a read-only transaction acknowledged with an append
// that the restarted cluster did not have. So under 'disk' a read-only transaction's promise
// waits, as a writing one's does, until a page server has every commit up to the time it
// read at on disk. A writing transaction needs nothing more: its own commit is later than
// everything it read, and a page server's disk holds a prefix of the commits.
//
// A page server's acknowledgement of this node's commit at time t says its disk holds every
// commit up to t; otherwise the node asks (DurableQuery) and the page server answers
// (DurableAt) once its disk holds the time asked for. Questions are asked again every second
// while a wait lasts (a page server may have died with the question) and at once when the
// configuration changes.
import { decode, encode, Msg } from './protocol';
import type { Cluster } from './cluster';

/** A question is asked again this often while its answer has not come. */
const RETRY_MS = 1000;

interface Waiter {
  time: number;
  done: (uncertain: boolean) => void;
}

export class DurableReads {
  /** What each page server said its disk holds: every commit up to this time. */
  private readonly onDisk = new Map<number, number>();
  private waiters: Waiter[] = [];
  /** The highest time asked for, of whom, since the last answer or retry. */
  private asked = 0;
  private retryTimer?: NodeJS.Timeout;

  constructor(private readonly n: Cluster) {}

  /**
   * Calls `done(false)` once a page server of the configuration has every commit up to
   * `time` on disk, or `done(true)` if this node leaves the configuration or finds its
   * commits void first (what it read may not be in the cluster's history).
   */
  wait(time: number, done: (uncertain: boolean) => void): void {
    if (this.held(time)) return done(false);
    this.waiters.push({ time, done });
    if (time > this.asked) this.ask(time);
    this.armRetry();
  }

  /** A page server acknowledged a commit of this node at `time`: its disk holds every commit up to it. */
  acked(from: number, time: number): void {
    if (this.n.members.get(from)?.pageServer) this.learn(from, time);
  }

  /** DurableAt from a page server. */
  onDurableAt(from: number, payload: Buffer): void {
    this.learn(from, decode.time(payload));
  }

  /** The configuration changed: ask page servers that joined (and forget those that left). */
  configurationChanged(): void {
    for (const id of this.onDisk.keys()) if (!this.n.members.has(id)) this.onDisk.delete(id);
    this.settle();
    if (this.waiters.length) this.ask(Math.max(...this.waiters.map((w) => w.time)));
  }

  /** This node's commits became uncertain (it was removed, cut off, or its commits void): so is what it read. */
  uncertain(): void {
    const ws = this.waiters;
    this.waiters = [];
    this.asked = 0;
    for (const w of ws) w.done(true);
  }

  stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private held(time: number): boolean {
    for (const [id, t] of this.onDisk) if (t >= time && this.n.members.has(id)) return true;
    return false;
  }

  private learn(from: number, time: number): void {
    if (time <= (this.onDisk.get(from) ?? -1)) return;
    this.onDisk.set(from, time);
    this.settle();
  }

  private settle(): void {
    if (!this.waiters.length) return;
    const left: Waiter[] = [];
    const done: Waiter[] = [];
    for (const w of this.waiters) (this.held(w.time) ? done : left).push(w);
    this.waiters = left;
    if (!left.length) this.asked = 0;
    for (const w of done) w.done(false);
  }

  private ask(time: number): void {
    this.asked = Math.max(this.asked, time);
    for (const id of this.n.replication.pageServers()) if (id !== this.n.id) this.n.links.send(id, Msg.DurableQuery, encode.time(time));
  }

  private armRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.waiters.length || this.n.closing) return;
      this.ask(Math.max(...this.waiters.map((w) => w.time)));
      this.armRetry();
    }, RETRY_MS);
    this.retryTimer.unref();
  }
}
