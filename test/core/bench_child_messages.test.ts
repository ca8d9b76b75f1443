// The benchmark suites' wait on a forked node (benchmarks/child_messages.mjs): a reply
// resolves it, and a child that exits first rejects it with its exit code or signal (a
// crash must not leave `npm run bench` waiting for ever).
import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const child = path.join(__dirname, 'fixtures/echo_child.cjs');

describe('benchmark child messages', () => {
  it('resolves with the reply, and rejects when the child exits or is killed first', async () => {
    const { ask, nextMessage } = (await import('../../benchmarks/child_messages.mjs')) as {
      ask: (c: ChildProcess, m: unknown) => Promise<unknown>;
      nextMessage: (c: ChildProcess, what?: string) => Promise<unknown>;
    };
    const a = fork(child);
    await expect(ask(a, { cmd: 'hello' })).resolves.toEqual({ got: 'hello' });
    await expect(ask(a, { cmd: 'bye' })).rejects.toThrow(/exited \(code 3\) before sending its reply to bye/);
    const b = fork(child);
    const waiting = nextMessage(b, 'ready');
    b.kill('SIGKILL');
    await expect(waiting).rejects.toThrow(/exited \(SIGKILL\) before sending ready/);
  });
});
