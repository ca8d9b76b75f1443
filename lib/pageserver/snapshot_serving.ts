// `dsm snapshot --connect`: a client asks a page server for a snapshot of its store. The page
// server makes one (snapshot.ts: a consistent image at one global time, from an LMDB read
// transaction, while commits go on) and streams it on the client's connection as it is made,
// honouring the connection's backpressure. The client writes the bytes under a temporary
// name, checks the whole file (SHA-256 trailer) and only then renames it into place.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { DsmError } from '../errors';
import { SnapshotError } from './errors';
import { checkSnapshot, type SnapshotInfo, snapshotChunks } from './snapshot';
import type { StoreFeed } from './feed';
import { decode, encode, Msg, NO_NODE } from '../service/protocol';
import { type Connection, Transport } from '../service/transport';

/** Page server side: streams a snapshot of the store to `c` as it is made (after a checkpoint: the image is current). */
export async function serveSnapshot(feed: StoreFeed, c: Connection, log: (m: string) => void): Promise<void> {
  // An empty first chunk says the request was taken, before the checkpoint (which can take a
  // while): a client whose connection drops after it knows a page server went away mid-way,
  // not that it asked something that has no store.
  c.send(Msg.SnapshotChunk, Buffer.alloc(0));
  try {
    await feed.checkpoint();
    const chunks = snapshotChunks(feed.store, undefined, feed.cluster);
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
  // Whether the peer took the request (sent a chunk): a page server, then.
  let accepted = false;
  try {
    let c: Connection;
    try {
      c = await t.connect(address);
    } catch (e) {
      // A socket error in the handshake comes bare (ECONNRESET: the peer died while greeting).
      if (e instanceof DsmError) throw e;
      throw new SnapshotError(`the connection to ${address} failed before the snapshot began (${(e as Error).message}); is a page server running there? Try again once it is`, { cause: e });
    }
    await new Promise<void>((resolve, reject) => {
      c.on('message', (type: number, payload: Buffer) => {
        try {
          if (type === Msg.SnapshotChunk) {
            accepted = true;
            fs.writeSync(fd, payload);
            received += payload.length;
            if (payload.length) onProgress?.(received);
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
        reject(
          new SnapshotError(
            accepted
              ? `the page server at ${address} went away during the snapshot (${reason}${received ? `, after ${received} bytes` : ''}); nothing was written to ${out}. Try again once it is back`
              : `${address} closed the connection before taking the snapshot request (${reason}); is it a page server, and is it running? (nodes have no store to snapshot)`,
          ),
        ),
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
    if (e instanceof DsmError) throw e;
    // What is left are the file's own errors (a full disk, say).
    throw new SnapshotError(`writing the snapshot to ${out} failed: ${(e as Error).message}; nothing was written there`, { cause: e });
  } finally {
    await t.close();
  }
}
