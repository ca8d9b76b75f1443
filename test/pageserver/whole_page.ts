// Commit changes for the commit-log and store tests: whole pages, as a commit record carries
// them (u64 the version replaced | u32 length | the page; native/page_diff.h).
export const PS = 4096;
export const geometry = { pageSize: PS, regionSize: 64 * PS };

/** One whole-page change replacing `replaces`, the page filled with `fill`. */
export function wholePage(replaces: number, fill: number): Uint8Array {
  const c = new Uint8Array(12 + PS);
  const dv = new DataView(c.buffer);
  dv.setUint32(0, replaces, true);
  dv.setUint32(8, PS, true);
  c.fill(fill, 12);
  return c;
}
