// Peer events that happen while createNode() runs reach listeners attached right after it
// resolves (lib/node.ts releaseEarlyEvents). Before, a peer that joined through a node still
// opening its heap was never told to the program: the two-machine demo's master waited for
// a 'peer-join' that had come and gone.
import { fork } from 'node:child_process';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Harness, SECRET } from './harness';

const h = new Harness();
afterEach(() => h.close());

it('a peer that joins while createNode() opens the heap is told to the listener attached after it resolves', async () => {
  const child = fork(path.join(__dirname, 'fixtures/early_peer.js'), [SECRET], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    let out = '';
    const seen: Array<() => void> = [];
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const look of seen) look();
    });
    const line = (test: (l: string) => boolean) =>
      new Promise<string>((resolve, reject) => {
        const look = () => {
          const l = out.split('\n').find(test);
          if (l !== undefined) resolve(l);
        };
        seen.push(look);
        child.once('exit', () => reject(new Error(`the node exited; it printed:\n${out}`)));
        // Ends the test (and stops the node) rather than leaving it to the runner's time-out.
        setTimeout(() => reject(new Error(`no such line after 30 s; the node printed:\n${out}`)), 30_000).unref();
        look();
      });
    const address = (await line((l) => l.startsWith('listening '))).slice('listening '.length);
    const b = await h.start({ peers: [address] });
    await line((l) => l === 'created');
    // Told after the await, though it happened before createNode() returned.
    expect(await line((l) => l.startsWith('peer-join '))).toBe(`peer-join ${b.nodeId}`);
  } finally {
    child.send('close');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    child.kill('SIGKILL');
  }
}, 60_000);
