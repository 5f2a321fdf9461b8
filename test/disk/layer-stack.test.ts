import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LayerStack, MAX_EXTENT_RUNS } from '../../src/disk/layer-stack.ts';
import { DiskError } from '../../src/errors.ts';
import { PLAIN_SOURCE, type ByteSource } from '../../src/io/types.ts';
import { normalise, patternLayer, SyntheticLayer, type PlainExtent } from './synthetic.ts';

const SECTORS = 128;
const SIZE = SECTORS * 512;

/** The flat model of a stack of pattern layers: top-most mapping wins, zeroed and holes read zero. */
function flatten(layers: Array<{ extents: PlainExtent[]; bytes: Uint8Array }>): Uint8Array {
  const out = new Uint8Array(SIZE);
  for (const { extents, bytes } of layers) {
    for (const e of extents) {
      const at = e.offset * 512;
      const len = Math.min(e.length, SECTORS - e.offset) * 512;
      if (e.zeroed) out.fill(0, at, at + len);
      else out.set(bytes.subarray(e.moffset * 512, e.moffset * 512 + len), at);
    }
  }
  return out;
}

const extentArb = fc.record({
  offset: fc.integer({ min: 0, max: SECTORS - 1 }),
  length: fc.integer({ min: 1, max: 24 }),
  moffset: fc.integer({ min: 0, max: 200 }),
  zeroed: fc.boolean(),
}).map((e) => ({ ...e, length: Math.min(e.length, SECTORS - e.offset) }));

test('reads at any offset and length equal the flat model of the stack', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.array(extentArb, { maxLength: 12 }).map(normalise), { minLength: 1, maxLength: 5 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 0, max: 9000 })), { minLength: 1, maxLength: 8 }),
    async (extentLists, reads) => {
      const built = extentLists.map((extents, i) => ({ extents, ...patternLayer(`L${i}`, SIZE, extents, i * 17) }));
      const stack = await LayerStack.open({ lowers: built.map((b) => b.layer) });
      const model = flatten(built);
      assert.equal(stack.size, SIZE);
      assert.equal(stack.writable, false);
      const whole = new Uint8Array(SIZE);
      await stack.read(whole, 0);
      assert.deepEqual(whole, model);
      // Concurrent unaligned reads must not disturb each other's planning.
      await Promise.all(reads.map(async ([off, len]) => {
        const n = Math.min(len, SIZE - off);
        const got = new Uint8Array(n);
        await stack.read(got, off);
        assert.deepEqual(got, model.subarray(off, off + n));
      }));
      // Block status agrees with the model: data runs are data, and zero runs read as zeros.
      const runs = await stack.extents(0, SIZE);
      let pos = 0;
      for (const r of runs) {
        assert.equal(r.offset, pos);
        pos += r.length;
        if (r.zero) assert.ok(model.subarray(r.offset, r.offset + r.length).every((b) => b === 0));
      }
      assert.equal(pos, SIZE);
      // readMapped: the same bytes, and the same map as extents() over the same range.
      await Promise.all(reads.map(async ([off, len]) => {
        const at = Math.floor(off / 512) * 512;
        const n = Math.min(Math.ceil(len / 512) * 512, SIZE - at);
        const got = new Uint8Array(n).fill(0xee);
        const map = await stack.readMapped(got, at);
        assert.deepEqual(got, model.subarray(at, at + n));
        assert.deepEqual(map, await stack.extents(at, n));
      }));
      const odd = new Uint8Array(700);
      assert.deepEqual(await stack.readMapped(odd, 3), await stack.extents(3, 700));
      assert.deepEqual(odd, model.subarray(3, 703));
      await stack.close();
      assert.ok(built.every((b) => b.layer.closed));
    }), { numRuns: 150 });
});

test('reads near and across sector 2^31 (the merged index\'s 32-bit limit) equal the flat model', async () => {
  // The same random stack placed so the index stays packed, and so it must fall back to the wide layout.
  await fc.assert(fc.asyncProperty(
    fc.array(fc.array(extentArb, { maxLength: 12 }).map(normalise), { minLength: 1, maxLength: 4 }),
    fc.constantFrom(2 ** 31 - 1 - SECTORS, 2 ** 31 - SECTORS / 2),
    fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 9000 }),
    async (extentLists, baseSector, off, len) => {
      const built = extentLists.map((extents, i) => ({ extents, ...patternLayer(`L${i}`, SIZE, extents, i * 17) }));
      const model = flatten(built);
      const base = baseSector * 512;
      const size = base + SIZE;
      const lowers = built.map((b, i) => new SyntheticLayer(`L${i}`, size, b.extents.map((e) => ({ ...e, offset: e.offset + baseSector })), b.layer.data));
      const stack = await LayerStack.open({ lowers });
      const mapped = built.some((b) => b.extents.length > 0);
      const lastEnd = Math.max(0, ...built.flatMap((b) => b.extents.map((e) => e.offset + e.length)));
      assert.equal(stack.index.layout, mapped && baseSector + lastEnd > 2 ** 31 - 1 ? 'wide' : 'packed');
      const whole = new Uint8Array(SIZE);
      await stack.read(whole, base);
      assert.deepEqual(whole, model);
      const n = Math.min(len, SIZE - off);
      const part = new Uint8Array(n);
      await stack.read(part, base + off);
      assert.deepEqual(part, model.subarray(off, off + n));
      await stack.close();
    }), { numRuns: 60 });
});

test('extents of a range more fragmented than the run limit returns a prefix; asking again continues', async () => {
  // Alternating data and hole sectors: one run per sector.
  const sectors = 2 * MAX_EXTENT_RUNS + 100;
  const extents = Array.from({ length: sectors / 2 }, (_, i) => ({ offset: 2 * i, length: 1, moffset: 8 + i, zeroed: false }));
  const size = sectors * 512;
  const { layer } = patternLayer('frag', size, extents, 5);
  const stack = await LayerStack.open({ lowers: [layer] });
  let pos = 100;
  let calls = 0;
  while (pos < size) {
    const runs = await stack.extents(pos, size - pos);
    calls++;
    assert.ok(runs.length > 0 && runs.length <= MAX_EXTENT_RUNS);
    for (const r of runs) {
      assert.equal(r.offset, pos);
      const sector = Math.floor(r.offset / 512);
      assert.equal(r.zero, sector % 2 === 1, `run at sector ${sector}`);
      assert.equal(r.hole, r.zero);
      pos += r.length;
    }
    assert.ok(pos <= size);
  }
  assert.equal(calls, 3);
});

test('adjacent extents contiguous in one layer file are fetched with one source read', async () => {
  const extents = [
    { offset: 0, length: 4, moffset: 8, zeroed: false },
    { offset: 4, length: 4, moffset: 12, zeroed: false },
    { offset: 8, length: 2, moffset: 100, zeroed: false },
  ];
  const { layer } = patternLayer('L', SIZE, extents, 3);
  const calls: Array<[number, number]> = [];
  const inner = layer.data;
  const counting: ByteSource = {
    caps: PLAIN_SOURCE,
    size: inner.size,
    name: 'counting',
    read: (dst, off) => { calls.push([off, dst.length]); return inner.read(dst, off); },
    close: () => inner.close(),
  };
  const stack = await LayerStack.open({ lowers: [new SyntheticLayer('L', SIZE, extents, counting)] });
  await stack.read(new Uint8Array(12 * 512), 0);
  assert.deepEqual(calls, [[8 * 512, 8 * 512], [100 * 512, 2 * 512]]);
});

test('extents reports holes, zeroed extents and data, clipped to unaligned ranges', async () => {
  const bottom = patternLayer('bottom', SIZE, [{ offset: 0, length: 10, moffset: 8, zeroed: false }], 1).layer;
  const top = patternLayer('top', SIZE, [{ offset: 4, length: 2, moffset: 0, zeroed: true }, { offset: 20, length: 1, moffset: 8, zeroed: false }], 2).layer;
  const stack = await LayerStack.open({ lowers: [bottom, top] });
  assert.deepEqual(await stack.extents(100, 30 * 512), [
    { offset: 100, length: 4 * 512 - 100, hole: false, zero: false },
    { offset: 4 * 512, length: 2 * 512, hole: false, zero: true },
    { offset: 6 * 512, length: 4 * 512, hole: false, zero: false },
    { offset: 10 * 512, length: 10 * 512, hole: true, zero: true },
    { offset: 20 * 512, length: 512, hole: false, zero: false },
    { offset: 21 * 512, length: 30 * 512 + 100 - 21 * 512, hole: true, zero: true },
  ]);
});

test('size is the top-most non-zero virtual size unless given', async () => {
  const a = new SyntheticLayer('a', 4096, [], { caps: PLAIN_SOURCE, size: 0, read: async () => 0, close: async () => {} });
  const b = new SyntheticLayer('b', 0, [], { caps: PLAIN_SOURCE, size: 0, read: async () => 0, close: async () => {} });
  assert.equal((await LayerStack.open({ lowers: [a, b] })).size, 4096);
  assert.equal((await LayerStack.open({ lowers: [a, b], size: 1024 })).size, 1024);
  await assert.rejects(LayerStack.open({ lowers: [b] }), /no layer of the stack gives a virtual size/);
});

test('a read-only stack refuses writes and trims with EROFS', async () => {
  const { layer } = patternLayer('L', SIZE, [], 0);
  const stack = await LayerStack.open({ lowers: [layer] });
  await assert.rejects(stack.write(new Uint8Array(512), 0), (e: unknown) => e instanceof DiskError && e.code === 'EROFS');
  await assert.rejects(stack.trim(0, 512), (e: unknown) => e instanceof DiskError && e.code === 'EROFS');
  await stack.flush();
});

test('reads outside the disk fail with EINVAL', async () => {
  const { layer } = patternLayer('L', SIZE, [], 0);
  const stack = await LayerStack.open({ lowers: [layer] });
  const einval = (e: unknown) => e instanceof DiskError && e.code === 'EINVAL';
  await assert.rejects(stack.read(new Uint8Array(512), SIZE), einval);
  await assert.rejects(stack.read(new Uint8Array(2), SIZE - 1), einval);
  await assert.rejects(stack.read(new Uint8Array(1), -1), einval);
  await assert.rejects(stack.extents(SIZE - 512, 1024), einval);
  await stack.read(new Uint8Array(1), SIZE - 1);
});

test('more than 255 lower layers is refused, naming the count', async () => {
  const layers = Array.from({ length: 256 }, (_, i) => patternLayer(`L${i}`, SIZE, [], 0).layer);
  await assert.rejects(LayerStack.open({ lowers: layers }), /at most 255 read-only layers; got 256/);
  const ok = await LayerStack.open({ lowers: layers.slice(0, 255) });
  assert.equal(ok.size, SIZE);
});

test('a failing lower source surfaces as EIO naming the layer, never as bytes', async () => {
  const broken: ByteSource = {
    caps: PLAIN_SOURCE,
    size: 1 << 20,
    name: '/blobs/broken.zlsmt',
    read: async () => { throw new Error('CRC mismatch in block 3'); },
    close: async () => {},
  };
  const good = patternLayer('good', SIZE, [{ offset: 0, length: 8, moffset: 8, zeroed: false }], 5).layer;
  const bad = new SyntheticLayer('layer-b', SIZE, [{ offset: 4, length: 2, moffset: 8, zeroed: false }], broken);
  const stack = await LayerStack.open({ lowers: [good, bad] });
  await assert.rejects(stack.read(new Uint8Array(4096), 0), (e: unknown) => e instanceof DiskError && e.code === 'EIO' &&
    /layer layer-b \(\/blobs\/broken\.zlsmt\)/.test(e.message) && /CRC mismatch in block 3/.test(e.message));
  // Sectors served by the healthy layer still read.
  const ok = new Uint8Array(2048);
  await stack.read(ok, 0);
  // A source that ends early is an error too.
  const short = new SyntheticLayer('short', SIZE, [{ offset: 0, length: 2, moffset: 8, zeroed: false }],
    { caps: PLAIN_SOURCE, size: 10, name: 'short.lsmt', read: async (dst) => Math.min(dst.length, 10), close: async () => {} });
  const s2 = await LayerStack.open({ lowers: [short] });
  await assert.rejects(s2.read(new Uint8Array(1024), 0), (e: unknown) => e instanceof DiskError && e.code === 'EIO' && /short read/.test(e.message));
});

test('an unaligned read whose edge fails rejects only after its middle part is done with the buffer', async () => {
  let middleDone = false;
  const data: ByteSource = {
    caps: PLAIN_SOURCE,
    size: 64 * 512, name: 'edge-fails',
    read: async (dst, offset) => {
      if (offset === 0) throw new DiskError('EIO', 'edge sector unreadable');
      await new Promise((r) => setTimeout(r, 30));
      dst.fill(1);
      middleDone = true;
      return dst.length;
    },
    close: async () => {},
  };
  const index = { count: 1, offset: new Float64Array([0]), length: new Uint32Array([64]), moffset: new Float64Array([0]), zeroed: new Uint8Array(1), tag: new Uint8Array(1) };
  const stack = await LayerStack.open({ lowers: [{ name: 'L', virtualSize: 64 * 512, index, data, uuid: '', parentUuid: '', close: async () => {} }] });
  try {
    await assert.rejects(stack.read(new Uint8Array(8192), 100), /edge sector unreadable/);
    assert.ok(middleDone, 'the read settled before the middle part finished writing into the buffer');
  } finally {
    await stack.close();
  }
});
