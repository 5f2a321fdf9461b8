import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MergedIndex } from '../../src/disk/merged-index.ts';
import { MAX_EXTENT_SECTORS } from '../../src/format/lsmt/types.ts';
import { normalise, segmentIndex, type PlainExtent } from './synthetic.ts';

const SPAN = 256;
/** Largest start sector an LSMT index record can hold (50-bit field). */
const MAX_OFFSET = 2 ** 50 - 1;
/** Where the packed (32-bit) layout stops: an index ending past this uses the wide one. */
const PACKED_LIMIT = 2 ** 31 - 1;

/** Bases that put a small test stack at the start, just below / across the packed limit, or at the top of the format. */
const baseArb = fc.constantFrom(0, PACKED_LIMIT - 300, PACKED_LIMIT - SPAN - 41, PACKED_LIMIT - 100, MAX_OFFSET - SPAN - MAX_EXTENT_SECTORS);

const extentArb = fc.record({
  offset: fc.integer({ min: 0, max: SPAN - 1 }),
  length: fc.integer({ min: 1, max: 40 }),
  moffset: fc.integer({ min: 8, max: 10_000 }),
  zeroed: fc.boolean(),
});
const layerArb = fc.array(extentArb, { maxLength: 25 }).map(normalise);

type Resolved = string; // "hole" | "t<tag>:zero" | "t<tag>:<moffset>"

function shifted(layer: PlainExtent[], base: number): PlainExtent[] {
  return layer.map((e) => ({ ...e, offset: e.offset + base }));
}

/** Per-sector reference: the top-most layer mapping the sector decides it (sector relative to the layers' own offsets). */
function modelSector(layersBottomFirst: PlainExtent[][], sector: number): Resolved {
  const n = layersBottomFirst.length;
  for (let k = 0; k < n; k++) {
    const layer = layersBottomFirst[n - 1 - k]!;
    const e = layer.find((x) => x.offset <= sector && sector < x.offset + x.length);
    if (e) return e.zeroed ? `t${k}:zero` : `t${k}:${e.moffset + sector - e.offset}`;
  }
  return 'hole';
}

/** What a lookup of [base+from, +count) says about each sector. */
function resolvedByLookup(idx: MergedIndex, base: number, from: number, count: number): Resolved[] {
  const out: Resolved[] = new Array(count).fill('hole');
  let prevEnd = -1;
  idx.lookup(base + from, count, (off, len, moff, zeroed, tag) => {
    assert.ok(off >= base + from && off + len <= base + from + count, 'trimmed to the range');
    assert.ok(off >= prevEnd, 'sorted and non-overlapping');
    assert.ok(len > 0);
    prevEnd = off + len;
    for (let s = 0; s < len; s++) out[off - base - from + s] = zeroed ? `t${tag}:zero` : `t${tag}:${moff + s}`;
  });
  return out;
}

type Visit = [number, number, number, boolean, number];

function visits(idx: MergedIndex, sector: number, count: number): Visit[] {
  const out: Visit[] = [];
  idx.lookup(sector, count, (o, l, m, z, t) => out.push([o, l, m, z, t]));
  return out;
}

/** Every extent of the index, in order. */
function allExtents(idx: MergedIndex): Visit[] {
  return visits(idx, 0, Number.MAX_SAFE_INTEGER);
}

test('merged index resolves every sector like the top-most layer that maps it, at any position the format allows', () => {
  fc.assert(fc.property(fc.array(layerArb, { minLength: 1, maxLength: 7 }), baseArb, fc.integer({ min: 0, max: SPAN + 40 }), fc.integer({ min: 1, max: 120 }),
    (layers, base, from, count) => {
      const idx = MergedIndex.build(layers.map((l) => segmentIndex(shifted(l, base))));
      const span = SPAN + 50;
      const expected = Array.from({ length: span }, (_, s) => modelSector(layers, s));
      assert.deepEqual(resolvedByLookup(idx, base, 0, span), expected);
      assert.deepEqual(resolvedByLookup(idx, base, from, count), expected.slice(from, from + count).concat(
        Array.from({ length: Math.max(0, from + count - span) }, (_, i) => modelSector(layers, span + i))));
      // Nothing is found before the stack's first extent or after its last.
      if (base > 0) assert.deepEqual(visits(idx, 0, base), []);
      assert.deepEqual(visits(idx, base + SPAN + 40, 2 ** 52), []);
      // The index itself is sorted and non-overlapping.
      const all = allExtents(idx);
      assert.equal(all.length, idx.count);
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]![0] + all[i - 1]![1] <= all[i]![0]);
      assert.equal(idx.layout, all.length > 0 && all.at(-1)![0] + all.at(-1)![1] > PACKED_LIMIT ? 'wide' : 'packed');
    }), { numRuns: 400 });
});

/**
 * The simple model of a lookup: scan every extent, keep those that intersect the range, trim them.
 * A one-layer stack's merged index is that layer's extents, so this checks the search structure
 * on its own, on indexes big enough to use every level of it.
 */
function linearLookup(extents: PlainExtent[], sector: number, count: number): Visit[] {
  const end = sector + count;
  const out: Visit[] = [];
  for (const e of extents) {
    const from = Math.max(sector, e.offset);
    const to = Math.min(end, e.offset + e.length);
    if (from < to) out.push([from, to - from, e.zeroed ? e.moffset : e.moffset + from - e.offset, e.zeroed, 0]);
  }
  return out;
}

const startArb = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5000 }), fc.constant(PACKED_LIMIT - 60_000),
  fc.constant(MAX_OFFSET - 2_000_000));

test('lookups agree with a linear scan on large indexes: gaps of zero (adjacent extents), exact boundaries, before the first and after the last', () => {
  fc.assert(fc.property(
    startArb,
    fc.array(fc.tuple(fc.nat(30), fc.integer({ min: 1, max: 20 }), fc.boolean()), { maxLength: 5000, size: 'max' }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: -2, max: 2 }), fc.integer({ min: 1, max: 70 })), { minLength: 1, maxLength: 40 }),
    (start, shape, probes) => {
      let at = start;
      const extents = shape.map(([gap, length, zeroed], i) => {
        const e = { offset: at + gap, length, moffset: 8 + 7 * i, zeroed };
        at = e.offset + length;
        return e;
      });
      const idx = MergedIndex.build([segmentIndex(extents)]);
      assert.equal(idx.count, extents.length);
      // Probe near extent starts and ends (exact boundaries and one or two sectors either side), and before/after everything.
      const points = probes.map(([pick, delta]) => {
        if (extents.length === 0) return start + delta + 2;
        const e = extents[pick % extents.length]!;
        return Math.max(0, (pick & 1 ? e.offset : e.offset + e.length) + delta);
      });
      points.push(0, Math.max(0, start - 1), at, at + 1, at + 1000);
      for (let k = 0; k < points.length; k++) {
        const count = probes[k % probes.length]![2];
        assert.deepEqual(visits(idx, points[k]!, count), linearLookup(extents, points[k]!, count), `lookup(${points[k]}, ${count})`);
        let expected = 0;
        while (expected < extents.length && extents[expected]!.offset + extents[expected]!.length <= points[k]!) expected++;
        assert.equal(idx.firstEndingAfter(points[k]!), expected, `firstEndingAfter(${points[k]})`);
      }
    }), { numRuns: 150 });
});

test('an empty index finds nothing anywhere', () => {
  for (const idx of [MergedIndex.empty(), MergedIndex.build([]), MergedIndex.build([segmentIndex([]), segmentIndex([])])]) {
    assert.equal(idx.count, 0);
    for (const s of [0, 1, PACKED_LIMIT, MAX_OFFSET]) {
      assert.deepEqual(visits(idx, s, 100), []);
      assert.equal(idx.firstEndingAfter(s), 0);
    }
  }
});

test('the largest extent the format allows, at the largest offset, is found whole and in part', () => {
  const e = { offset: MAX_OFFSET, length: MAX_EXTENT_SECTORS, moffset: 2 ** 55 - MAX_EXTENT_SECTORS - 1, zeroed: false };
  const idx = MergedIndex.build([segmentIndex([{ offset: 0, length: 1, moffset: 8, zeroed: false }]), segmentIndex([e])]);
  assert.equal(idx.layout, 'wide');
  assert.deepEqual(visits(idx, MAX_OFFSET - 10, 20), [[MAX_OFFSET, 10, e.moffset, false, 0]]);
  assert.deepEqual(visits(idx, MAX_OFFSET + 100, 8), [[MAX_OFFSET + 100, 8, e.moffset + 100, false, 0]]);
  assert.deepEqual(visits(idx, MAX_OFFSET + MAX_EXTENT_SECTORS, 8), []);
  assert.deepEqual(visits(idx, 0, 1), [[0, 1, 8, false, 1]]);
  // Just below the packed limit stays packed, with the largest length and a 55-bit moffset.
  const top = { offset: PACKED_LIMIT - MAX_EXTENT_SECTORS, length: MAX_EXTENT_SECTORS, moffset: 2 ** 55 - 1 - MAX_EXTENT_SECTORS, zeroed: false };
  const packed = MergedIndex.build([segmentIndex([top])]);
  assert.equal(packed.layout, 'packed');
  assert.deepEqual(visits(packed, PACKED_LIMIT - 1, 100), [[PACKED_LIMIT - 1, 1, top.moffset + MAX_EXTENT_SECTORS - 1, false, 0]]);
  assert.deepEqual(visits(packed, PACKED_LIMIT, 100), []);
  assert.deepEqual(visits(packed, 2 ** 40, 8), []);
});

test('zeroed extents of an upper layer mask lower data; gaps stay holes', () => {
  const bottom = [{ offset: 0, length: 100, moffset: 8, zeroed: false }];
  const top = [{ offset: 10, length: 5, moffset: 0, zeroed: true }, { offset: 200, length: 4, moffset: 8, zeroed: false }];
  const idx = MergedIndex.build([segmentIndex(bottom), segmentIndex(top)]);
  assert.deepEqual(visits(idx, 0, 300), [[0, 10, 8, false, 1], [10, 5, 0, true, 0], [15, 85, 23, false, 1], [200, 4, 8, false, 0]]);
  assert.deepEqual(visits(idx, 12, 5), [[12, 3, 0, true, 0], [15, 2, 23, false, 1]]);
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
  const all = allExtents(idx);
  for (let i = 0; i < 254; i++) assert.deepEqual(all[i], [i, 1, 1000 + i, false, 254 - i]);
  assert.deepEqual(all[254], [254, 46, 1254, false, 0]);
});

test('255 random layers resolve every sector like the top-most layer that maps it', () => {
  fc.assert(fc.property(fc.array(fc.array(extentArb, { maxLength: 3 }).map(normalise), { minLength: 255, maxLength: 255 }), baseArb, (layers, base) => {
    const idx = MergedIndex.build(layers.map((l) => segmentIndex(shifted(l, base))));
    assert.deepEqual(resolvedByLookup(idx, base, 0, SPAN + 50), Array.from({ length: SPAN + 50 }, (_, s) => modelSector(layers, s)));
  }), { numRuns: 20 });
});

test('an unsorted layer index is rejected with the layer named', () => {
  const bad = segmentIndex([{ offset: 10, length: 5, moffset: 8, zeroed: false }, { offset: 12, length: 1, moffset: 8, zeroed: false }]);
  assert.throws(() => MergedIndex.build([bad], ['bad.lsmt']), /layer bad\.lsmt: index record 1 at sector 12 overlaps/);
});
