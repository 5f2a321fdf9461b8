import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ExtentMap } from '../../../src/format/lsmt/extent-map.ts';

/** Per-sector model: moffset of the sector's data, -1 for zeroed, undefined for never written. */
function check(map: ExtentMap, model: (number | undefined)[]): void {
  const seen: (number | undefined)[] = new Array(model.length).fill(undefined);
  let prevEnd = -1;
  map.lookup(0, model.length + 100, (s, n, m, z) => {
    assert.ok(s >= prevEnd, 'extents sorted and disjoint');
    assert.ok(n > 0);
    prevEnd = s + n;
    for (let k = 0; k < n; k++) seen[s + k] = z ? -1 : m + k;
    if (z) assert.ok(m >= 8, 'zeroed extents keep a valid moffset');
  });
  assert.deepEqual(seen, model);
  const idx = map.toIndex();
  assert.equal(idx.count, map.count);
}

for (const chunkSize of [512, 2, 5]) test(`ExtentMap (chunks of ${chunkSize}) matches a per-sector model under random inserts`, () => {
  const SPACE = 3000;
  const op = fc.record({
    off: fc.integer({ min: 0, max: SPACE - 1 }),
    len: fc.integer({ min: 1, max: 300 }),
    zero: fc.boolean(),
  });
  fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: chunkSize < 10 ? 150 : 1500 }), (ops) => {
    const map = new ExtentMap(chunkSize);
    const model: (number | undefined)[] = new Array(SPACE + 300).fill(undefined);
    let moff = 8;
    for (const o of ops) {
      map.insert(o.off, o.len, moff, o.zero ? 1 : 0);
      for (let k = 0; k < o.len; k++) model[o.off + k] = o.zero ? -1 : moff + k;
      if (chunkSize < 10) check(map, model); // small chunks: check every step
      moff += o.len;
    }
    check(map, model);
    // A lookup of a sub-range is trimmed to it.
    const parts: [number, number][] = [];
    map.lookup(100, 50, (s, n) => { parts.push([s, n]); });
    for (const [s, n] of parts) assert.ok(s >= 100 && s + n <= 150);
  }), { numRuns: 60 });
});

test('ExtentMap: 50,000 random inserts into a large space stay fast and consistent', () => {
  const map = new ExtentMap();
  let seed = 12345;
  const rnd = (): number => { // mulberry32
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const t0 = performance.now();
  for (let i = 0; i < 50_000; i++) map.insert((rnd() % 16_000_000) * 8, 8, 8 + i * 8, 0);
  const ms = performance.now() - t0;
  let prevEnd = -1;
  let n = 0;
  map.lookup(0, 2 ** 40, (s, len) => { assert.ok(s >= prevEnd); prevEnd = s + len; n++; });
  assert.equal(n, map.count);
  assert.ok(map.count > 49_000, `expected ~50,000 disjoint extents, got ${map.count}`);
  // Not a timing assertion (see bench/commit.bench.ts); logged to show it is not quadratic.
  console.log(`50,000 inserts: ${ms.toFixed(0)} ms, ${map.count} extents`);
});
