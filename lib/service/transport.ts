// Authenticated, framed, heartbeated TCP connections between nodes. The cluster protocol
// (cluster.ts) sends (type, payload) messages over them; this file owns sockets, frames
// (frame.ts), the secret handshake (handshake.ts), heartbeats and dead-peer detection.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { encodeHeader, FrameDecoder, FrameType, HEADER, PRE_AUTH_MAX_FRAME, PROTOCOL_VERSION } from './frame';
import { DEFAULT_CLUSTER_ID, newNonce, proof, Role, verify } from './handshake';
import { AuthFailedError, HandshakeClosedError, ListenError, ProtocolError, UnreachableError } from './transport_errors';

export interface TransportLogger {
  warn(message: string): void;
  error(message: string): void;
}

export interface TransportOptions {
  /** host:port to listen on; default 127.0.0.1:0 (loopback, any free port). */
  listen?: string;
  secret: string | Buffer;
  /** Carried in every frame; frames of another cluster are refused (default DEFAULT_CLUSTER_ID). */
  clusterId?: number;
  /** A heartbeat goes out after this long without other outgoing traffic (default 1000 ms). */
  heartbeatMs?: number;
  /** A connection silent this long is closed with reason 'heartbeat' (default 5000 ms). */
  deadAfterMs?: number;
  /** A connection that has not completed the handshake within this long is closed (default 10 000 ms). */
  handshakeTimeoutMs?: number;
  /** Largest payload accepted once authenticated (default 64 MiB); before, PRE_AUTH_MAX_FRAME. */
  maxFrame?: number;
  /** Incoming connections allowed in their handshake at once; more are closed at once (default 32). */
  maxHandshakes?: number;
  /** Bytes queued for the peer above which a connection is backlogged (default 8 MiB). */
  backlogBytes?: number;
  /**
   * Bytes queued for the peer beyond which the connection is closed with reason
   * 'backpressure' (default 256 MiB; at least maxFrame + backlogBytes). The cluster's
   * senders wait for a backlogged connection to drain, so only a peer that stops reading
   * altogether gets this far.
   */
  maxQueuedBytes?: number;
  logger?: TransportLogger;
}

type ConnectionLimits = Required<Pick<TransportOptions, 'heartbeatMs' | 'deadAfterMs' | 'backlogBytes' | 'maxQueuedBytes'>>;

/** At most one log line per this long about connections refused for too many handshakes. */
const REFUSED_LOG_MS = 5000;

export function splitAddress(a: string): { host: string; port: number } {
  const i = a.lastIndexOf(':');
  const host = a.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(a.slice(i + 1)) };
}

/** Whether `host` means every interface (0.0.0.0, ::): an address to listen on, never to dial. */
export function unspecifiedHost(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::';
}

/**
 * `address` as others can dial it: a node listening on every interface (0.0.0.0, ::)
 * advertises the unspecified host, which on any other machine means that machine itself;
 * it is replaced by `ip`, an address of the node as one of its peers sees it. A loopback
 * `ip` (a peer on the same machine) is no better for the others and is not taken: the
 * unspecified host still reaches the node from its own machine.
 */
export function dialable(address: string, ip: string | undefined): string {
  const { host, port } = splitAddress(address);
  if (!unspecifiedHost(host) || !ip) return address;
  const h = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (h === '::1' || h.startsWith('127.')) return address;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

/**
 * One authenticated connection. Events: 'message' (type, payload), 'close' (reason),
 * 'backlogged' (more than backlogBytes queued for the peer), 'drain' (backlog written out).
 *
 * A peer that reads slower than it is sent to must slow its senders: a sender of many or
 * large messages checks `backlogged` (or send()'s result) and awaits `whenDrained()` before
 * going on. Queued bytes never exceed maxQueuedBytes: a send beyond it closes the
 * connection with reason 'backpressure', as if the peer had died.
 */
export class Connection extends EventEmitter {
  readonly remoteAddress: string;
  /** The peer's IP, and ours, on this connection. */
  readonly remoteIp: string | undefined;
  readonly localIp: string | undefined;
  private closed = false;
  private isBacklogged = false;
  private drainWaiters: Array<() => void> = [];
  private corked = false;
  private lastIn = Date.now();
  private lastOut = Date.now();
  private timer?: NodeJS.Timeout;
  /** Frames that arrive with the end of the handshake wait until the user has had a turn to listen. */
  private held: Array<[number, Buffer]> | undefined = [];

  /** @internal */
  constructor(
    private readonly socket: net.Socket,
    private readonly clusterId: number,
    private readonly opts: ConnectionLimits,
    private readonly logger?: TransportLogger,
  ) {
    super();
    this.remoteAddress = `${socket.remoteAddress}:${socket.remotePort}`;
    this.remoteIp = socket.remoteAddress;
    this.localIp = socket.localAddress;
    // The socket asks for 'drain' whenever a write finds more than its (small) high-water
    // mark queued, which every backlogged state does; it fires once everything queued has
    // gone to the kernel.
    socket.on('drain', () => this.drained());
  }

  /** @internal Called once the handshake succeeded: frames now flow to the user. */
  start(): void {
    this.timer = setInterval(() => this.tick(), Math.max(10, Math.min(this.opts.heartbeatMs, this.opts.deadAfterMs / 2)));
    this.timer.unref();
    // The connection is handed over in a promise continuation or an event; listeners are
    // attached there, so held frames are released one turn later.
    setImmediate(() => {
      const held = this.held!;
      this.held = undefined;
      for (const [t, p] of held) if (!this.closed) this.emit('message', t, p);
    });
  }

  /** @internal */
  received(type: number, payload: Buffer): void {
    this.lastIn = Date.now();
    if (type === FrameType.heartbeat) return;
    if (type < FrameType.firstUser) throw new ProtocolError(`unexpected transport frame of type ${type} after the handshake`);
    if (this.held) this.held.push([type, payload]);
    else this.emit('message', type, payload);
  }

  /**
   * Sends one message; frames are written in order. Many sends in one tick go out in one
   * system call. Returns false when the connection is backlogged (the frame is still
   * queued: slow down, see whenDrained()) or closed (the frame is dropped).
   */
  send(type: number, payload: Buffer, onWritten?: () => void): boolean {
    if (type < FrameType.firstUser || type > 255) throw new RangeError(`message type ${type} is reserved for the transport (use 16-255)`);
    return this.write(type, payload, onWritten);
  }

  /**
   * @internal `onWritten` runs once the payload is no longer needed: handed to the kernel,
   * or dropped with a closed connection (so a caller can reuse the buffer).
   */
  write(type: number, payload: Buffer, onWritten?: () => void): boolean {
    if (this.closed) {
      onWritten?.();
      return false;
    }
    if (this.socket.writableLength + HEADER + payload.length > this.opts.maxQueuedBytes) {
      onWritten?.();
      this.overflow(payload.length);
      return false;
    }
    this.lastOut = Date.now();
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(encodeHeader(this.clusterId, type, payload.length));
    if (payload.length) {
      if (onWritten) this.socket.write(payload, () => onWritten());
      else this.socket.write(payload);
    } else {
      onWritten?.();
    }
    if (!this.isBacklogged && this.socket.writableLength > this.opts.backlogBytes) {
      this.isBacklogged = true;
      this.emit('backlogged');
    }
    return !this.isBacklogged;
  }

  /** Bytes sent but not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.closed ? 0 : this.socket.writableLength;
  }

  /** More than backlogBytes are queued for the peer: senders should wait for whenDrained(). */
  get backlogged(): boolean {
    return this.isBacklogged;
  }

  /** Resolves once the connection is no longer backlogged, or is closed (check isClosed). */
  whenDrained(): Promise<void> {
    if (!this.isBacklogged || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private drained(): void {
    if (!this.isBacklogged || this.socket.writableLength > this.opts.backlogBytes) return;
    this.isBacklogged = false;
    this.wakeDrainWaiters();
    this.emit('drain');
  }

  private wakeDrainWaiters(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of w) resolve();
  }

  /**
   * The peer let more than maxQueuedBytes pile up: it is too slow to keep, and holding on
   * would grow memory without bound. The connection fails as a dead peer's would. 'close'
   * comes on the next tick, so a sender in the middle of a loop over members is not
   * re-entered by the removal the close triggers.
   */
  private overflow(adding: number): void {
    const queued = this.socket.writableLength;
    this.logger?.warn(
      `closing the connection to ${this.remoteAddress}: ${queued} bytes queued for it and ${adding} more to send exceed the limit of ${this.opts.maxQueuedBytes} (the peer reads too slowly or not at all)`,
    );
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.socket.destroy();
    this.wakeDrainWaiters();
    process.nextTick(() => this.emit('close', 'backpressure'));
  }

  /** Whether the peer was heard from (any frame, heartbeats included) within half the time that declares it dead. */
  get lively(): boolean {
    return !this.closed && Date.now() - this.lastIn < this.opts.deadAfterMs / 2;
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastIn > this.opts.deadAfterMs) {
      this.close('heartbeat');
      return;
    }
    if (now - this.lastOut >= this.opts.heartbeatMs) this.write(FrameType.heartbeat, Buffer.alloc(0));
  }

  /** Closes the connection; 'close' is emitted once, with `reason`. */
  close(reason = 'local'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.wakeDrainWaiters();
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.emit('close', reason);
  }

  /** @internal The socket went away. */
  lost(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.wakeDrainWaiters();
    this.socket.destroy();
    this.emit('close', reason);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The socket's file descriptor, for native code that takes the connection over (it
   * duplicates the descriptor, then release() drops this side's handle). Only valid while
   * the connection is open; -1 if the platform has none.
   */
  get fd(): number {
    return (this.socket as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
  }

  /** Lets go of the socket after native code has taken it over: no close frame, no 'close' event. */
  release(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.wakeDrainWaiters();
    this.socket.removeAllListeners('data');
    this.socket.destroy();
  }
}

/**
 * Listens for peers and dials them. Events: 'connection' (Connection) for each
 * authenticated incoming connection; 'rejected' ({ remote, reason }) for refused ones.
 *
 * @example
 * const t = new Transport({ secret: 's' }); const addr = await t.listen();
 * const c = await t.connect('127.0.0.1:7400'); c.send(16, Buffer.from('hi'));
 */
export class Transport extends EventEmitter {
  private readonly secret: Buffer;
  readonly clusterId: number;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly opts: Required<Omit<TransportOptions, 'secret' | 'clusterId' | 'logger'>>;
  private readonly logger: TransportLogger;
  /** Incoming connections in their handshake now. */
  private handshaking = 0;
  /** Connections refused for too many handshakes since the last log line about it. */
  private refused = 0;
  private refusedLog?: NodeJS.Timeout;

  /** How long a silent connection lives before it counts as dead (membership.ts uses it for members never connected at all). */
  get deadAfterMs(): number {
    return this.opts.deadAfterMs;
  }

  constructor(o: TransportOptions) {
    super();
    if (!o.secret || o.secret.length === 0) throw new AuthFailedError('(no secret given)');
    this.secret = Buffer.isBuffer(o.secret) ? o.secret : Buffer.from(o.secret, 'utf8');
    this.clusterId = o.clusterId ?? DEFAULT_CLUSTER_ID;
    const maxFrame = o.maxFrame ?? 64 << 20;
    const backlogBytes = o.backlogBytes ?? 8 << 20;
    this.opts = {
      listen: o.listen ?? '127.0.0.1:0',
      heartbeatMs: o.heartbeatMs ?? 1000,
      deadAfterMs: o.deadAfterMs ?? 5000,
      handshakeTimeoutMs: o.handshakeTimeoutMs ?? 10_000,
      maxFrame,
      maxHandshakes: o.maxHandshakes ?? 32,
      backlogBytes,
      // A frame as large as allowed must fit on a backlogged connection.
      maxQueuedBytes: Math.max(o.maxQueuedBytes ?? 256 << 20, maxFrame + HEADER + backlogBytes),
    };
    this.logger = o.logger ?? { warn: () => undefined, error: () => undefined };
  }

  /** What native code reading a connection of this transport must check and send. */
  get wire(): { clusterId: number; protocolVersion: number; heartbeatType: number; maxFrame: number; heartbeatMs: number } {
    return { clusterId: this.clusterId, protocolVersion: PROTOCOL_VERSION, heartbeatType: FrameType.heartbeat, maxFrame: this.opts.maxFrame, heartbeatMs: this.opts.heartbeatMs };
  }

  /** Starts listening; resolves with the bound address ('host:port'). */
  listen(): Promise<string> {
    const { host, port } = splitAddress(this.opts.listen);
    const server = net.createServer((s) => {
      const remote = `${s.remoteAddress}:${s.remotePort}`;
      if (this.handshaking >= this.opts.maxHandshakes) {
        // Strangers could otherwise hold any number of sockets and buffers open: close at
        // once, before reading anything. Peers that are refused retry.
        s.destroy();
        this.noteRefused(remote);
        this.emit('rejected', { remote, reason: 'too many connections in their handshake' });
        return;
      }
      this.handshaking++;
      this.handshake(s, Role.acceptor).then(
        (c) => {
          this.handshaking--;
          this.emit('connection', c);
        },
        (e: Error) => {
          this.handshaking--;
          if (!(e instanceof HandshakeClosedError)) this.logger.warn(`refused a connection from ${remote}: ${e.message}`);
          this.emit('rejected', { remote, reason: e.message });
        },
      );
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      const failed = (e: Error): void => reject(new ListenError(this.opts.listen, e));
      server.once('error', failed);
      server.listen(port, host, () => {
        server.off('error', failed);
        server.on('error', (e) => this.logger.error(`listener error: ${e.message}`));
        const a = server.address() as net.AddressInfo;
        resolve(`${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });
  }

  /** One line per few seconds however many connections are refused: a flood must not flood the log too. */
  private noteRefused(remote: string): void {
    this.refused++;
    if (this.refusedLog) return;
    const flush = (): void => {
      this.refusedLog = undefined;
      if (this.refused === 0) return;
      this.logger.warn(
        `refused ${this.refused} connection(s), the latest from ${remote}: ${this.opts.maxHandshakes} connections are already in their handshake ` +
          `(each is closed if it has not authenticated within ${this.opts.handshakeTimeoutMs} ms)`,
      );
      this.refused = 0;
      this.refusedLog = setTimeout(flush, REFUSED_LOG_MS);
      this.refusedLog.unref();
    };
    flush();
  }

  /**
   * Dials a peer and proves the secret both ways; rejects with AuthFailedError if refused.
   * `connectTimeoutMs`: give up (UnreachableError) when the peer's host has not taken the
   * connection by then; a blackholed address otherwise takes the kernel's minutes.
   */
  connect(address: string, connectTimeoutMs?: number): Promise<Connection> {
    const { host, port } = splitAddress(address);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const unreachable = (e: Error): void => {
        clearTimeout(timer);
        reject(new UnreachableError(address, e));
      };
      const timer =
        connectTimeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              s.off('error', unreachable);
              s.on('error', () => undefined);
              s.destroy();
              reject(new UnreachableError(address, Object.assign(new Error(`no answer within ${connectTimeoutMs} ms`), { code: 'ETIMEDOUT' })));
            }, connectTimeoutMs);
      s.once('error', unreachable);
      s.once('connect', () => {
        clearTimeout(timer);
        s.off('error', unreachable);
        this.handshake(s, Role.initiator).then(resolve, reject);
      });
    });
  }

  private handshake(s: net.Socket, role: number): Promise<Connection> {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    s.setNoDelay(true);
    const remote = `${s.remoteAddress}:${s.remotePort}`;
    const conn = new Connection(s, this.clusterId, this.opts, this.logger);
    // Until the peer has proved the secret it may only send handshake-sized frames.
    const decoder = new FrameDecoder(this.clusterId, PRE_AUTH_MAX_FRAME);
    const nonce = newNonce();
    const peerRole = role === Role.initiator ? Role.acceptor : Role.initiator;
    let peerNonce: Buffer | undefined;
    let verified = false;
    let accepted = false;
    let done = false;
    let failed = false;
    return new Promise((resolve, reject) => {
      const fail = (e: Error, tell: boolean) => {
        if (done) return;
        done = true;
        failed = true;
        clearTimeout(timer);
        if (tell) conn.write(FrameType.authFailed, Buffer.alloc(0));
        // Let the refusal reach the peer, then drop the socket whatever it does.
        s.end();
        setTimeout(() => s.destroy(), 200);
        reject(e);
      };
      const timer = setTimeout(() => fail(new ProtocolError(`no handshake from ${remote} within ${this.opts.handshakeTimeoutMs} ms`), false), this.opts.handshakeTimeoutMs);
      timer.unref();
      const onFrame = (type: number, payload: Buffer) => {
        // A refused or broken handshake: whatever the peer still sends (its own refusal,
        // say) is dropped with the socket.
        if (failed) return;
        if (done) {
          conn.received(type, payload);
          return;
        }
        if (type === FrameType.nonce && !peerNonce && payload.length === 32) {
          peerNonce = Buffer.from(payload);
          conn.write(FrameType.proof, proof(this.secret, role, nonce, peerNonce, this.clusterId));
        } else if (type === FrameType.proof && peerNonce && !verified) {
          if (!verify(this.secret, peerRole, peerNonce, nonce, this.clusterId, payload)) {
            fail(new AuthFailedError(remote), true);
            return;
          }
          verified = true;
          conn.write(FrameType.authOk, Buffer.alloc(0));
        } else if (type === FrameType.authOk && verified) {
          accepted = true;
        } else if (type === FrameType.authFailed) {
          fail(new AuthFailedError(remote), false);
          return;
        } else {
          fail(new ProtocolError(`unexpected frame of type ${type} during the handshake with ${remote}`), false);
          return;
        }
        if (verified && accepted) {
          done = true;
          decoder.maxFrame = this.opts.maxFrame;
          clearTimeout(timer);
          conn.start();
          resolve(conn);
        }
      };
      s.on('data', (chunk: Buffer) => {
        // A refused peer's further bytes are dropped unread, never buffered.
        if (failed || conn.isClosed) return;
        decoder.feed(chunk);
        // One frame at a time: the end of the handshake raises the size limit for the
        // frames that follow it in the same chunk.
        for (;;) {
          let f;
          try {
            f = decoder.next();
          } catch (e) {
            if (done) {
              this.logger.warn(`closing the connection to ${remote}: ${(e as Error).message}`);
              conn.lost('protocol');
            } else {
              fail(e as Error, false);
            }
            return;
          }
          if (!f) return;
          try {
            onFrame(f.type, f.payload);
          } catch (e) {
            this.logger.warn(`closing the connection to ${remote}: ${(e as Error).message}`);
            conn.lost('protocol');
            return;
          }
          if (failed || conn.isClosed) return;
        }
      });
      s.on('error', (e) => {
        if (!done) fail(e, false);
        else conn.lost(`error: ${e.message}`);
      });
      const closedEarly = () => {
        if (!done) fail(new HandshakeClosedError(remote), false);
      };
      s.on('end', closedEarly);
      s.on('close', () => {
        closedEarly();
        conn.lost('closed');
      });
      conn.write(FrameType.nonce, nonce);
    });
  }

  /** Stops listening and closes every connection, after flushing what was sent. */
  async close(): Promise<void> {
    if (this.refusedLog) clearTimeout(this.refusedLog);
    const closing = [...this.sockets].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed) return resolve();
          s.once('close', () => resolve());
          s.end(); // flushes queued frames (a Leave, a token) before the FIN
          setTimeout(() => s.destroy(), 1000).unref();
        }),
    );
    await Promise.all(closing);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
