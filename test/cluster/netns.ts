// Network namespaces for partition tests: every node gets a network stack of its own,
// plugged into a bridge that lives in a namespace of its own too (the host's network is
// never touched). Cutting a node unplugs its port on the bridge, as pulling a cable would:
// its packets go nowhere, nothing tells either side, and only timeouts notice. Addresses
// are in 10.213.0.0/24 and exist only inside these namespaces. Node processes are started
// with `ip netns exec` and driven over IPC like the loopback harness's.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Harness, RemoteNode, SECRET } from './harness';

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const r = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `the ip command (iproute2) is not available: ${r.error?.message ?? r.stderr}`;
  return undefined;
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** A fresh node process in `namespace`, added to `nodes`, ready for its first command. */
async function spawnIn(namespace: string, nodes: RemoteNode[]): Promise<RemoteNode> {
  const fixture = path.join(__dirname, 'fixtures/remote_node.js');
  const proc = spawn('ip', ['netns', 'exec', namespace, process.execPath, fixture], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const n = new RemoteNode(proc);
  nodes.push(n);
  await n.waitForLine((l) => l === 'ready');
  return n;
}

export class NetnsCluster {
  /** Unique per run, so parallel or leftover runs never collide. */
  readonly tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  readonly hub = `dsmhub-${this.tag}`;
  readonly namespaces: string[] = [];
  readonly nodes: RemoteNode[] = [];

  constructor(readonly size: number) {}

  /** The address of namespace `i`. */
  host(i: number): string {
    return `10.213.0.${i + 1}`;
  }

  /** Creates the hub with its bridge and one namespace per node, each plugged in. */
  create(): void {
    ip('netns', 'add', this.hub);
    ip('-n', this.hub, 'link', 'set', 'lo', 'up');
    ip('-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.hub, 'link', 'set', 'br0', 'up');
    for (let i = 0; i < this.size; i++) {
      const ns = `dsmn${i}-${this.tag}`;
      ip('netns', 'add', ns);
      this.namespaces.push(ns);
      ip('-n', this.hub, 'link', 'add', `port${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', this.hub, 'link', 'set', `port${i}`, 'master', 'br0');
      ip('-n', this.hub, 'link', 'set', `port${i}`, 'up');
      ip('-n', ns, 'addr', 'add', `${this.host(i)}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
  }

  /** Unplugs node `i` from the bridge. */
  cut(i: number): void {
    ip('-n', this.hub, 'link', 'set', `port${i}`, 'down');
  }

  /** Plugs node `i` in again. */
  heal(i: number): void {
    ip('-n', this.hub, 'link', 'set', `port${i}`, 'up');
  }

  /**
   * Nodes `i` and `j` no longer reach each other, while both still reach everyone else (a
   * non-transitive partition: each sees a majority, and a different one). Bridge port
   * isolation: isolated ports forward only to ports that are not.
   */
  isolate(i: number, j: number): void {
    for (const k of [i, j]) ip('-n', this.hub, 'link', 'set', 'dev', `port${k}`, 'type', 'bridge_slave', 'isolated', 'on');
  }

  /** Undoes isolate(). */
  unisolate(i: number, j: number): void {
    for (const k of [i, j]) ip('-n', this.hub, 'link', 'set', 'dev', `port${k}`, 'type', 'bridge_slave', 'isolated', 'off');
  }

  /**
   * Node `i` hears nothing while everyone still hears it (a one-way partition; TCP then stalls
   * both ways once its acknowledgements are missed, with the victim's last segments still
   * arriving). The bridge forgets where the node is and no longer floods frames to its port,
   * so no frame for it leaves the bridge, while its own frames are forwarded as before.
   */
  deafen(i: number): void {
    ip('-n', this.hub, 'link', 'set', 'dev', `port${i}`, 'type', 'bridge_slave', 'learning', 'off', 'flood', 'off', 'mcast_flood', 'off', 'bcast_flood', 'off');
    ip('-n', this.hub, 'link', 'set', 'dev', `port${i}`, 'type', 'bridge_slave', 'fdb_flush');
  }

  /** Undoes deafen(). */
  undeafen(i: number): void {
    ip('-n', this.hub, 'link', 'set', 'dev', `port${i}`, 'type', 'bridge_slave', 'learning', 'on', 'flood', 'on', 'mcast_flood', 'on', 'bcast_flood', 'on');
  }

  /** A fresh node process in namespace `i`, ready for its first command. */
  private spawn(i: number): Promise<RemoteNode> {
    return spawnIn(this.namespaces[i], this.nodes);
  }

  /** Starts a node process in namespace `i` and creates a DSM node there. */
  async start(i: number, options: Record<string, unknown>): Promise<RemoteNode> {
    return (await this.spawn(i)).create({ regionSize: 16 << 20, secret: SECRET, ...options });
  }

  /** Starts a page server process in namespace `i` (store in `dir`). */
  async startPageServer(i: number, options: Record<string, unknown> & { dir: string }): Promise<RemoteNode> {
    return (await this.spawn(i)).startPageServer({ regionSize: 16 << 20, secret: SECRET, ...options });
  }

  /** Kills every node process, then removes every namespace (also after a failed test). */
  /** A directory for this cluster's processes (a page server's store), removed by destroy() once they have exited. */
  tempDir(prefix: string): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  private readonly dirs: string[] = [];

  async destroy(): Promise<void> {
    for (const n of this.nodes) n.kill('SIGKILL');
    await Promise.all(this.nodes.map((n) => n.exited));
    this.nodes.length = 0;
    for (const ns of [...this.namespaces, this.hub]) spawnSync('ip', ['netns', 'del', ns]);
    this.namespaces.length = 0;
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}

/**
 * A Harness whose node processes each live in a network namespace of their own (process
 * i in namespace i, listening on its address), so the list-append workload can cut one off
 * (test/history/workload.ts, fault 'partition'). Namespaces are made on first use and
 * removed by close().
 */
export class NetnsHarness extends Harness {
  private net?: NetnsCluster;

  constructor(private readonly size: number) {
    super();
  }

  protected override spawn(): Promise<RemoteNode> {
    if (!this.net) {
      this.net = new NetnsCluster(this.size);
      this.net.create();
    }
    const i = this.nodes.length;
    if (i >= this.size) throw new Error(`this harness has ${this.size} namespaces`);
    return spawnIn(this.net.namespaces[i], this.nodes);
  }

  override async start(options: Record<string, unknown> = {}): Promise<RemoteNode> {
    const i = this.nodes.length;
    return (await this.spawn()).create({ regionSize: 16 << 20, secret: SECRET, ...options, listen: `${this.host(i)}:7000` });
  }

  override async pageServer(options: Record<string, unknown> & { dir: string }): Promise<RemoteNode> {
    const i = this.nodes.length;
    return (await this.spawn()).startPageServer({ regionSize: 16 << 20, secret: SECRET, ...options, listen: `${this.host(i)}:7000` });
  }

  private host(i: number): string {
    return `10.213.0.${i + 1}`;
  }

  /** Unplugs node process `n` from the bridge. */
  cut(n: RemoteNode): void {
    this.net!.cut(this.nodes.indexOf(n));
  }

  /** Plugs node process `n` in again. */
  heal(n: RemoteNode): void {
    this.net!.heal(this.nodes.indexOf(n));
  }

  /** Node processes `a` and `b` stop reaching each other; both reach the rest (NetnsCluster.isolate). */
  isolate(a: RemoteNode, b: RemoteNode): void {
    this.net!.isolate(this.nodes.indexOf(a), this.nodes.indexOf(b));
  }

  unisolate(a: RemoteNode, b: RemoteNode): void {
    this.net!.unisolate(this.nodes.indexOf(a), this.nodes.indexOf(b));
  }

  /** Node process `n` hears nothing; the others still hear it (NetnsCluster.deafen). */
  deafen(n: RemoteNode): void {
    this.net!.deafen(this.nodes.indexOf(n));
  }

  undeafen(n: RemoteNode): void {
    this.net!.undeafen(this.nodes.indexOf(n));
  }

  override async close(): Promise<void> {
    await super.close();
    await this.net?.destroy();
    this.net = undefined;
  }
}
