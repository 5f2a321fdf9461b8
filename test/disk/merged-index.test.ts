import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MergedIndex } from '../../src/disk/merged-index.ts';
import { normalise, segmentIndex, type PlainExtent } from './synthetic.ts';

const SPAN = 256;

const extentArb = fc.record({
  offset: fc.integer({ min: 0, max: SPAN - 1 }),
  length: fc.integer({ min: 1, max: 40 }),
  moffset: fc.integer({ min: 8, max: 10_000 }),
  zeroed: fc.boolean(),
});
const layerArb = fc.array(extentArb, { maxLength: 25 }).map(normalise);

type Resolved = string; // "hole" | "t<tag>:zero" | "t<tag>:<moffset>"

/** Per-sector reference: the top-most layer mapping the sector decides it. */
function modelSector(layersBottomFirst: PlainExtent[][], sector: number): Resolved {
  const n = layersBottomFirst.length;
  for (let k = 0; k < n; k++) {
    const layer = layersBottomFirst[n - 1 - k]!;
    const e = layer.find((x) => x.offset <= sector && sector < x.offset + x.length);
    if (e) return e.zeroed ? `t${k}:zero` : `t${k}:${e.moffset + sector - e.offset}`;
  }
  return 'hole';
}

function resolvedByLookup(idx: MergedIndex, from: number, count: number): Resolved[] {
  const out: Resolved[] = new Array(count).fill('hole');
  let prevEnd = -1;
  idx.lookup(from, count, (off, len, moff, zeroed, tag) => {
    assert.ok(off >= from && off + len <= from + count, 'trimmed to the range');
    assert.ok(off >= prevEnd, 'sorted and non-overlapping');
    assert.ok(len > 0);
    prevEnd = off + len;
    for (let s = 0; s < len; s++) out[off - from + s] = zeroed ? `t${tag}:zero` : `t${tag}:${moff + s}`;
  });
  return out;
}

test('merged index resolves every sector like the top-most layer that maps it', () => {
  fc.assert(fc.property(fc.array(layerArb, { minLength: 1, maxLength: 7 }), fc.integer({ min: 0, max: SPAN + 40 }), fc.integer({ min: 1, max: 120 }),
    (layers, from, count) => {
      const idx = MergedIndex.build(layers.map(segmentIndex));
      const span = SPAN + 50;
      const expected = Array.from({ length: span }, (_, s) => modelSector(layers, s));
      assert.deepEqual(resolvedByLookup(idx, 0, span), expected);
      assert.deepEqual(resolvedByLookup(idx, from, count), expected.slice(from, from + count).concat(
        Array.from({ length: Math.max(0, from + count - span) }, (_, i) => modelSector(layers, span + i))));
      // The index itself is sorted and non-overlapping.
      for (let i = 1; i < idx.count; i++) assert.ok(idx.offset[i - 1]! + idx.length[i - 1]! <= idx.offset[i]!);
    }), { numRuns: 400 });
});

test('zeroed extents of an upper layer mask lower data; gaps stay holes', () => {
  const bottom = [{ offset: 0, length: 100, moffset: 8, zeroed: false }];
  const top = [{ offset: 10, length: 5, moffset: 0, zeroed: true }, { offset: 200, length: 4, moffset: 8, zeroed: false }];
  const idx = MergedIndex.build([segmentIndex(bottom), segmentIndex(top)]);
  const seen: unknown[] = [];
  idx.lookup(0, 300, (o, l, m, z, t) => seen.push([o, l, m, z, t]));
  assert.deepEqual(seen, [[0, 10, 8, false, 1], [10, 5, 0, true, 0], [15, 85, 23, false, 1], [200, 4, 8, false, 0]]);
  const first: unknown[] = [];
  idx.lookup(12, 5, (o, l, m, z, t) => first.push([o, l, m, z, t]));
  assert.deepEqual(first, [[12, 3, 0, true, 0], [15, 2, 23, false, 1]]);
});

test('more than 255 layers is refused, naming the count', () => {
  const layers = Array.from({ length: 256 }, () => segmentIndex([]));
  assert.throws(() => MergedIndex.build(layers), /at most 255 read-only layers; got 256/);
  assert.equal(MergedIndex.build(layers.slice(0, 255)).count, 0);
});

test('255 layers each mapping one sector keep their tags counted from the top', () => {
  const layers = Array.from({ length: 255 }, (_, i) => segmentIndex([{ offset: i, length: 300 - i, moffset: 1000 + i, zeroed: false }]));
  const idx = MergedIndex.build(layers);
  assert.equal(idx.count, 255);
  for (let i = 0; i < 254; i++) {
    assert.equal(idx.offset[i], i);
    assert.equal(idx.length[i], 1);
    assert.equal(idx.tag[i], 254 - i);
  }
  assert.equal(idx.length[254], 46);
  assert.equal(idx.tag[254], 0);
});

test('an unsorted layer index is rejected with the layer named', () => {
  const bad = segmentIndex([{ offset: 10, length: 5, moffset: 8, zeroed: false }, { offset: 12, length: 1, moffset: 8, zeroed: false }]);
  assert.throws(() => MergedIndex.build([bad], ['bad.lsmt']), /layer bad\.lsmt: index record 1 at sector 12 overlaps/);
});

test('firstEndingAfter agrees with a linear scan on large random indexes', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 1, max: 20 })), { maxLength: 3000 }),
    fc.array(fc.integer({ min: 0, max: 80_000 }), { minLength: 1, maxLength: 50 }), (gapsAndLengths, probes) => {
      let at = 0;
      const extents = gapsAndLengths.map(([gap, length], i) => {
        const e = { offset: at + gap, length, moffset: 8 + i, zeroed: false };
        at = e.offset + length;
        return e;
      });
      const idx = MergedIndex.build([segmentIndex(extents)]);
      for (const p of probes) {
        let expected = 0;
        while (expected < idx.count && idx.offset[expected]! + idx.length[expected]! <= p) expected++;
        assert.equal(idx.firstEndingAfter(p), expected, `sector ${p}`);
      }
    }), { numRuns: 200 });
});
