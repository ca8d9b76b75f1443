// `dsm snapshot --connect`: a client asks a page server for a snapshot of its store. The page
// server makes one (snapshot.ts: a consistent image at one global time, from an LMDB read
// transaction, while commits go on) and streams it on the client's connection as it is made,
// honouring the connection's backpressure. The client writes the bytes under a temporary
// name, checks the whole file (SHA-256 trailer) and only then renames it into place.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SnapshotError } from './errors';
import { checkSnapshot, type SnapshotInfo, snapshotChunks } from './snapshot';
import type { StoreFeed } from './feed';
import { decode, encode, Msg, NO_NODE } from '../service/protocol';
import { type Connection, Transport } from '../service/transport';

/** Page server side: streams a snapshot of the store to `c` as it is made (after a checkpoint: the image is current). */
export async function serveSnapshot(feed: StoreFeed, c: Connection, log: (m: string) => void): Promise<void> {
  try {
    await feed.checkpoint();
    const chunks = snapshotChunks(feed.store);
    let bytes = 0;
    for (;;) {
      const next = await chunks.next();
      if (next.done) {
        const info = next.value;
        c.send(Msg.SnapshotEnd, encode.json({ bytes, time: info.time, pages: info.pages }));
        return;
      }
      bytes += next.value.length;
      if (!c.send(Msg.SnapshotChunk, next.value)) await c.whenDrained();
      if (c.isClosed) {
        await chunks.return(undefined as never);
        return;
      }
    }
  } catch (e) {
    log(`a snapshot for ${c.remoteAddress} failed: ${(e as Error).message}`);
    c.send(Msg.SnapshotEnd, encode.json({ error: (e as Error).message }));
  }
}

/**
 * Client side: asks the page server at `address` for a snapshot and writes it to `out`,
 * checked whole before it appears there.
 */
export async function fetchSnapshot(
  address: string,
  secret: string,
  out: string,
  onProgress?: (bytes: number) => void,
): Promise<SnapshotInfo> {
  if (fs.existsSync(out)) throw new SnapshotError(`${out} exists already; give dsm snapshot a new file name`);
  const tmp = `${out}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `its directory ${path.dirname(path.resolve(out))} does not exist` : (e as Error).message;
    throw new SnapshotError(`cannot write the snapshot to ${out}: ${why}; give dsm snapshot a file in a directory you can write to`);
  }
  const t = new Transport({ listen: '127.0.0.1:0', secret });
  let received = 0;
  try {
    const c = await t.connect(address);
    await new Promise<void>((resolve, reject) => {
      c.on('message', (type: number, payload: Buffer) => {
        try {
          if (type === Msg.SnapshotChunk) {
            fs.writeSync(fd, payload);
            received += payload.length;
            onProgress?.(received);
          } else if (type === Msg.SnapshotEnd) {
            const end = decode.json(payload) as { bytes?: number; error?: string };
            if (end.error) reject(new SnapshotError(`the page server could not make a snapshot: ${end.error}`));
            else if (end.bytes !== received) reject(new SnapshotError(`the snapshot was cut short (${received} of ${end.bytes} bytes); try again`));
            else resolve();
          }
        } catch (e) {
          reject(e);
        }
      });
      c.on('close', (reason: string) =>
        reject(new SnapshotError(`${address} closed the connection during the snapshot (${reason}); is it a page server? (nodes have no store to snapshot)`)),
      );
      c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: '', joining: false, client: true }));
      c.send(Msg.SnapshotRequest, Buffer.alloc(0));
    });
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const info = await checkSnapshot(tmp);
    fs.renameSync(tmp, out);
    return info;
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      // closed already
    }
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    await t.close();
  }
}
