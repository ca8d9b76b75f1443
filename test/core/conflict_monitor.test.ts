// The monitor's table stays bounded and keeps the hottest pages when many pages conflict.
import { describe, expect, it } from 'vitest';
import { ConflictMonitor } from '../../lib/conflict_monitor';

describe('conflict monitor', () => {
  it('tracks a fixed number of pages, keeping the ones with the most aborts', () => {
    const m = new ConflictMonitor(4);
    for (let i = 0; i < 10; i++) m.record(7, 1);
    for (let i = 0; i < 6; i++) m.record(8, i % 2 ? 2 : 3);
    // A thousand pages with one abort each pass through the table without pushing out the hot ones.
    for (let p = 100; p < 1100; p++) m.record(p, 2);
    const top = m.top(3);
    expect(top.map((e) => [e.page, e.aborts])).toEqual([[7, 10], [8, 6], [1099, 1]]);
    expect(Object.fromEntries(top[1].byNode)).toEqual({ 2: 3, 3: 3 });
    expect(m.top(100)).toHaveLength(4);
    expect(m.total).toBe(1016);
  });
});
