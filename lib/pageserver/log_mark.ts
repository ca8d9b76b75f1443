// The log mark: where the store's image stands in its commit log (wal.ts), so that a log
// file deleted, emptied, cut short or taken from another store is refused at start instead
// of the store starting at its last checkpoint without the acknowledged commits only the log
// held.
//
// Each log file starts with a header record carrying a random id of its own. A file the log
// goes on from ends with an END record naming the next file's id (a linked END). Each store
// flush writes, in the same LMDB transaction as the pages, the mark: the number and id of the
// file the log is in and how many of its bytes were synced when the flush began (every record
// in them, and in every earlier file, is in the image). At open the log must hold, from the
// mark's file on, a chain: the mark's file with the mark's id, reaching at least the mark's
// position, and each later file the one its predecessor's END names.
//
// Each log file's size is a whole number of steps (wal.ts), set before any record goes past
// it: a crash never leaves another size, so a last file of another size was cut short, and
// is refused, even when the cut fell at a record boundary (which is what a crash after a
// sync leaves, and which the mark alone cannot tell from one past its position).
//
// A checkpoint (rotation, then flush, then retiring) does, in this order:
//   1. the next file is made (a spare renamed, or a new file), its size set to a whole
//      number of steps (one, or a spare's own), its header (naming the step) written, both
//      synced, and the directory synced;
//   2. the current file's linked END, naming it, is written and synced; records go to the
//      next file from now on;
//   3. the store flushes: one synced LMDB transaction with the pages and the new mark;
//   4. files before the mark's are retired (renamed spares, or deleted).
// Every state a crash can leave is accepted:
//   - before 1 ends: the next file is missing, holds a spare's stale records (their CRCs fail
//     under its new number), is empty, or holds its header alone, at any size; its
//     predecessor has no linked END. A last file after a file not linked to it, holding no
//     records, is such a file: nothing in it was acknowledged (records go there only after
//     step 2), and it is set aside as a spare, its size unchecked (made whole steps again
//     when it is reused). Its predecessor is then the last file, at its own steps;
//   - between 2 and 3: the mark names the older file; the chain goes on through its linked
//     END to the next file, which exists with that id (step 1 was durable before step 2);
//   - between 3 and 4: the mark names the new file; older files are still there, skipped;
//   - during 4: some older files are spares already; they are before the mark, not needed.
// Between checkpoints a crash leaves the last file at whole steps too: a group that does not
// fit grows the file by steps, synced before the group is written (a crash in between leaves
// the larger size and no records in it), and an END always fits after the records, so ending
// a file (a rotation, a close, an open) never grows it.
// Opening does the same steps over the replayed log (the last file is ended where its replay
// stopped, by a linked END to the new file), so a crash during an open is one of these too.
// A clean close ends the last file with an unlinked END (naming nothing): the open after it
// makes the next file and links the END then. Nothing after an END belongs to the log, so a
// last file that reached its END is not held to its steps.
//
// A last file that had grown past its first step (a checkpoint behind by a quarter of a
// step, or failing on a full disk) and was cut back to a whole number of steps is told by
// its group records: each names the file's size as it was written (layout 4), and the one
// that grew it lies below the cut. Left undetected: a last file of a store written before
// layout 4, cut so (the first checkpoint here starts a file that names its size), and one
// written before steps (layout 2), cut at a record boundary at or after the mark's
// position, which looks like a crash after the last synced write, as it did.
//
// A store without a mark (layout 1, written before marks, or a new store that has not
// completed its first open) is replayed as before, without the checks against the mark; its
// first flush with the log open writes the mark and the current layout (store_dir.ts).
import { StoreError } from './errors';
import { putU64, u64 } from './store_dir';

/** Bytes of a log file's id (its header record) and of a linked END's payload after its kind. */
export const LOG_ID_BYTES = 16;
/** The mark's record in the store's meta database ('log'): u64 file number | id | u64 position. */
const MARK_BYTES = 8 + LOG_ID_BYTES + 8;

export interface LogMark {
  /** The number of the log file the store continues in (log-<seq>.wal). */
  seq: number;
  /** The id in that file's header. */
  id: Buffer;
  /** Bytes of that file synced when the flush began: the file must reach at least this far. */
  at: number;
}

export function encodeMark(seq: number, id: Uint8Array, at: number): Buffer {
  const b = Buffer.alloc(MARK_BYTES);
  putU64(b, 0, seq);
  b.set(id, 8);
  putU64(b, 8 + LOG_ID_BYTES, at);
  return b;
}

/** The mark in a store's meta record; undefined for none. Throws StoreError for a record of another length. */
export function decodeMark(dir: string, b: Uint8Array | undefined): LogMark | undefined {
  if (b === undefined) return undefined;
  if (b.length !== MARK_BYTES) throw new StoreError(`the page store in ${dir} is damaged (its log mark is ${b.length} bytes); restore it from a snapshot (dsm restore --from FILE --dir DIR)`);
  return { seq: u64(b, 0), id: Buffer.from(b.subarray(8, 8 + LOG_ID_BYTES)), at: u64(b, 8 + LOG_ID_BYTES) };
}

/** What a pass over one log file found, before anything of it is applied. */
export interface FileScan {
  seq: number;
  name: string;
  /** The first format (wal-<n>.log) or a file of layout 1: no header, and no links. */
  headerless: boolean;
  /** Its header's id: undefined when it has none (headerless, or nothing valid at its start: blank). */
  id?: Buffer;
  /** Its size step, from its header: undefined for a file written before steps (wal.ts). */
  step?: number;
  /** Its size on disk. */
  size: number;
  /** How its records end (as replayFile says) and where: the offset after its last whole record. */
  end: 'end' | 'eof' | 'torn';
  at: number;
  /** The next file's id, when it ends with a linked END. */
  next?: Buffer;
  /** Records in it other than its header and group records. */
  records: number;
  /** The largest file size its group records name (0: none named, before layout 4). */
  named: number;
}

/** Which files to replay and which to set aside (a last file a rotation never finished). */
export interface ReplayPlan {
  replay: FileScan[];
  setAside: FileScan[];
}

const RESTORE = 'Restore the store from a snapshot (dsm restore --from FILE --dir DIR)';
const restore = 'restore the store from a snapshot (dsm restore --from FILE --dir DIR)';

/**
 * Checks the log files found in `dir` (in number order) against the store's mark and against
 * each other, before any is replayed; throws StoreError for a log that lost or changed what
 * the store knows was acknowledged. `file(seq)` names a file for messages.
 */
export function planReplay(dir: string, files: FileScan[], mark: LogMark | undefined, file: (s: FileScan | number) => string): ReplayPlan {
  let from = 0;
  if (mark) {
    from = files.findIndex((f) => f.seq === mark.seq);
    const logName = `the commit log file ${file(mark.seq)}, which the store continues in`;
    if (from < 0) {
      throw new StoreError(
        `${logName}, is missing: it was deleted or moved, so the commits acknowledged as durable since the store's last checkpoint are gone. ` +
          `Put the file back if you have it; otherwise ${restore}`,
      );
    }
    const f = files[from];
    if (!f.id) throw new StoreError(`${logName}, is empty or damaged at its start (${f.at} bytes of records), so the commits acknowledged since the store's last checkpoint are gone. ${RESTORE}`);
    if (!f.id.equals(mark.id)) throw new StoreError(`${logName}, is not this store's: its id differs from the one the store recorded (a log file of another store copied in?). Put this store's own file back, or ${restore}`);
    if (f.at < mark.at) {
      throw new StoreError(`${logName}, is cut short: its records end at byte ${f.at}, where the store recorded ${mark.at} bytes synced at its last checkpoint, so acknowledged commits are gone. ${RESTORE}`);
    }
  }
  const replay: FileScan[] = [];
  const setAside: FileScan[] = [];
  for (let i = from; i < files.length; i++) {
    const f = files[i];
    const prev = replay.at(-1);
    if (prev?.next) {
      // A linked END: the next file was made durable before it, with that id.
      if (!f.id) throw new StoreError(`the commit log file ${file(f)} is empty or damaged at its start, where ${file(prev)} went on in it: commits acknowledged in it are gone. ${RESTORE}`);
      if (!f.id.equals(prev.next)) throw new StoreError(`the commit log file ${file(f)} is not the one ${file(prev)} went on in (its id differs: a log file of another store copied in?). ${RESTORE}`);
    } else if (i === files.length - 1 && (i > from || !mark) && !f.headerless && f.records === 0 && !f.next) {
      // Not linked to: a file a rotation never finished (step 1), holding nothing acknowledged.
      setAside.push(f);
      continue;
    } else if (prev && !(prev.headerless && ended(prev))) {
      throw new StoreError(`the commit log ${file(prev)} is damaged before its end (${file(f)} follows it with records it does not lead to); ${restore}`);
    } else if (!f.id && !f.headerless) {
      throw new StoreError(`the commit log file ${file(f)} is damaged at its start, with files after it; ${restore}`);
    }
    replay.push(f);
  }
  const last = replay.at(-1);
  if (last?.next) throw new StoreError(`the commit log file ${file(last)} went on in a next file, which is missing: commits acknowledged in it are gone. ${RESTORE}`);
  // Only the last file can lack its END (an earlier one without it is refused above); nothing
  // after an END belongs to the log, so a file cut after it lost nothing.
  if (last?.step && last.end !== 'end' && last.size % last.step !== 0) {
    throw new StoreError(
      `the commit log file ${file(last)} is cut short: it is ${last.size} bytes, where the log gives its files a whole number of ${last.step}-byte steps before writing records into them, ` +
        `so commits acknowledged as durable after its records' end (byte ${last.at}) may be gone. ${RESTORE}`,
    );
  }
  if (last && last.end !== 'end' && last.named > last.size) {
    throw new StoreError(
      `the commit log file ${file(last)} is cut short: it is ${last.size} bytes, where its records say it was ${last.named} bytes long as they were written, ` +
        `so commits acknowledged as durable after its records' end (byte ${last.at}) may be gone. ${RESTORE}`,
    );
  }
  return { replay, setAside };
}

/** A headerless file the log went on from (before links): complete when it reached its END (the first format has none: when it is not torn). */
function ended(f: FileScan): boolean {
  return f.name.endsWith('.log') ? f.end !== 'torn' : f.end === 'end';
}
