// `dsm snapshot --connect`: a client asks a page server for a snapshot of its store. The page
// server writes one (snapshot.ts: a consistent image at one global time, from an LMDB read
// transaction, while commits go on) to a temporary file beside its store, streams it on the
// client's connection in order, honouring the connection's backpressure, and deletes it. The
// client writes the bytes under a temporary name, checks the whole file (SHA-256 trailer) and
// only then renames it into place.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SnapshotError } from './errors';
import { checkSnapshot, type SnapshotInfo, writeSnapshot } from './snapshot';
import type { PageStore } from './store';
import { decode, encode, Msg, NO_NODE } from '../service/protocol';
import { type Connection, Transport } from '../service/transport';

const CHUNK = 1 << 20;

/** Page server side: writes a snapshot and streams it to `c`. */
export async function serveSnapshot(store: PageStore, c: Connection, log: (m: string) => void): Promise<void> {
  const tmp = path.join(path.dirname(store.dir), `.${path.basename(store.dir)}.snapshot-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const info = await writeSnapshot(store, tmp);
    const fd = fs.openSync(tmp, 'r');
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let at = 0; at < info.bytes; ) {
        const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, info.bytes - at), at);
        if (n <= 0) throw new Error('the snapshot file ended early');
        at += n;
        if (!c.send(Msg.SnapshotChunk, Buffer.from(buf.subarray(0, n)))) await c.whenDrained();
        if (c.isClosed) return;
      }
    } finally {
      fs.closeSync(fd);
    }
    c.send(Msg.SnapshotEnd, encode.json({ bytes: info.bytes, time: info.time, pages: info.pages }));
  } catch (e) {
    log(`a snapshot for ${c.remoteAddress} failed: ${(e as Error).message}`);
    c.send(Msg.SnapshotEnd, encode.json({ error: (e as Error).message }));
  } finally {
    fs.rmSync(tmp, { force: true });
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
  const t = new Transport({ listen: '127.0.0.1:0', secret });
  const fd = fs.openSync(tmp, 'w');
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
