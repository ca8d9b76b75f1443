// The recovery's answering rules about members on their way out (lib/service/unreached.ts,
// rule 3), on the class itself: which recovery queries a member answers, on a clock the
// test sets. The whole-cluster behaviour is in the history checker's partition schedules.
import { describe, expect, it } from 'vitest';
import { Unreached } from '../../lib/service/unreached';

const HOLD_MS = 8000;
const hearsNobody = () => false;

describe('unreached: recoveries of members a recovery named', () => {
  it('a member this node answered a recovery about stays unanswered for the hold time, even once it is connected again', () => {
    const u = new Unreached(() => undefined);
    // Node 2 answers node 1's recovery, which removes node 0.
    u.named([0], 1000, HOLD_MS, true);
    // Node 0 is connected again (a healed cut) before that configuration arrives here: its
    // own recovery, which would remove node 1, must not be answered, or both decide.
    u.back(0);
    expect(u.answerable(0, [1], hearsNobody, undefined, 2000)).toBe(false);
    expect(u.answerable(0, [1], hearsNobody, undefined, 1000 + HOLD_MS - 1)).toBe(false);
    // After the hold time, the earlier recovery has ended one way or the other.
    expect(u.answerable(0, [1], hearsNobody, undefined, 1000 + HOLD_MS)).toBe(true);
  });

  it('a member only this node\'s own recovery named is answered again once it is back', () => {
    const u = new Unreached(() => undefined);
    u.named([0], 1000, HOLD_MS, false);
    expect(u.answerable(0, [1], hearsNobody, undefined, 2000)).toBe(false);
    u.back(0);
    expect(u.answerable(0, [1], hearsNobody, undefined, 2000)).toBe(true);
  });

  it('answering once makes the entry stick, whatever this node ran before or after', () => {
    const u = new Unreached(() => undefined);
    u.named([0], 1000, HOLD_MS, true);
    u.named([0], 1500, HOLD_MS, false);
    u.back(0);
    expect(u.answerable(0, [1], hearsNobody, undefined, 1500 + HOLD_MS - 1)).toBe(false);
  });
});
