import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pageSizeFor, PresenceMap } from '../../../src/io/cache/presence.ts';
import { LatencyHistogram } from '../../../src/io/cache/stats.ts';
import { TokenBucket } from '../../../src/io/cache/token-bucket.ts';

test('presence map: encode/decode round trip keeps exactly the set units and their byte count', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 9, max: 14 }), fc.array(fc.nat()), (size, log2unit, picks) => {
    const unit = 2 ** log2unit;
    const map = new PresenceMap(size, unit);
    const model = new Set<number>();
    for (const p of picks) {
      const u = p % map.units;
      map.set(u);
      model.add(u);
    }
    const back = PresenceMap.decode(map.encode(), size, unit)!;
    assert.ok(back);
    for (let u = 0; u < map.units; u++) assert.equal(back.has(u), model.has(u));
    const bytes = [...model].reduce((n, u) => n + Math.min(unit, size - u * unit), 0);
    assert.equal(back.presentBytes, bytes);
    assert.equal(back.allPresent(0, map.units - 1), model.size === map.units);
  }));
});

test('presence map: a map for another size, unit or page, or a truncated one, is not trusted', () => {
  const map = new PresenceMap(10_000, 4096); // 512-byte pages: 20 of them, the last one short
  assert.equal(map.page, 512);
  map.set(1);
  const bytes = map.encode();
  assert.equal(PresenceMap.decode(bytes, 10_001, 4096), undefined);
  assert.equal(PresenceMap.decode(bytes, 10_000, 2048), undefined);
  assert.equal(PresenceMap.decode(bytes.subarray(0, bytes.length - 1), 10_000, 4096), undefined);
  const junk = Buffer.from(bytes);
  junk.write('XXXX', 0);
  assert.equal(PresenceMap.decode(junk, 10_000, 4096), undefined);
  const otherPage = Buffer.from(bytes);
  otherPage.writeUInt32LE(1024, 28);
  assert.equal(PresenceMap.decode(otherPage, 10_000, 4096), undefined);
  // Stray bits past the last page are ignored rather than counted.
  const stray = Buffer.from(bytes);
  stray[stray.length - 1]! |= 0xf0; // pages 16..19 live in bits 0..3 of the last byte
  const decoded = PresenceMap.decode(stray, 10_000, 4096)!;
  assert.equal(decoded.presentBytes, 4096);
  assert.equal(decoded.allPresent(1, 1), true);
  assert.equal(decoded.allPresent(0, 2), false);
});

test('presence map: pages split the unit in up to 64 parts of at least 512 bytes', () => {
  assert.equal(pageSizeFor(256 << 10), 4096);
  assert.equal(pageSizeFor(1 << 20), 16384);
  assert.equal(pageSizeFor(16 << 10), 512);
  assert.equal(pageSizeFor(512), 512);
  assert.equal(pageSizeFor(3 * 512), 512);
  assert.equal(pageSizeFor(1000), 1000, 'a unit that is not a multiple of 512 is one page');
});

test('presence map: pages and byte ranges agree with a per-byte model', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 50_000 }), fc.integer({ min: 9, max: 13 }),
    fc.array(fc.record({ page: fc.nat(), count: fc.integer({ min: 1, max: 70 }) }), { maxLength: 12 }),
    fc.array(fc.record({ offset: fc.nat(), length: fc.integer({ min: 1, max: 9000 }) }), { maxLength: 12 }),
    (size, log2unit, sets, probes) => {
      const map = new PresenceMap(size, 2 ** log2unit);
      const model = new Uint8Array(size);
      for (const { page, count } of sets) {
        const first = page % map.pages;
        const n = Math.min(count, map.pages - first);
        map.setPages(first, n);
        model.fill(1, first * map.page, Math.min(size, (first + n) * map.page));
      }
      assert.equal(map.presentBytes, model.reduce((a, b) => a + b, 0));
      for (const { offset, length } of probes) {
        const o = offset % size;
        const end = Math.min(size, o + length);
        assert.equal(map.rangePresent(o, end), model.subarray(o, end).every((b) => b === 1), `[${o}, ${end})`);
      }
      for (let u = 0; u < map.units; u++) {
        assert.equal(map.has(u), model.subarray(u * map.unit, (u + 1) * map.unit).every((b) => b === 1));
      }
      const back = PresenceMap.decode(map.encode(), size, map.unit)!;
      assert.deepEqual(back.bits, map.bits);
      assert.equal(back.presentBytes, map.presentBytes);
    }));
});

test('presence map: a version 1 map (one bit per unit) is read with each set unit widened to its pages', () => {
  const size = 5 * 4096 + 100;
  const v1 = Buffer.alloc(32 + 1);
  v1.write('DADICMAP', 0, 'latin1');
  v1.writeUInt32LE(1, 8);
  v1.writeUInt32LE(4096, 12);
  v1.writeBigUInt64LE(BigInt(size), 16);
  v1[32] = 0b100101; // units 0, 2 and 5 (the short last one)
  const map = PresenceMap.decode(v1, size, 4096)!;
  assert.ok(map);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((u) => map.has(u)), [true, false, true, false, false, true]);
  assert.equal(map.presentBytes, 2 * 4096 + 100);
  assert.equal(PresenceMap.decode(v1.subarray(0, 32), size, 4096), undefined, 'truncated');
});

test('presence map: complete flag round-trips and implies every unit', () => {
  const map = new PresenceMap(5000, 1024);
  map.markComplete();
  const back = PresenceMap.decode(map.encode(), 5000, 1024)!;
  assert.ok(back.complete);
  assert.equal(back.presentBytes, 5000);
  back.clear();
  assert.equal(back.has(0), false);
});

test('latency histogram quantiles are within one bucket (~9%) of the exact value', () => {
  const h = new LatencyHistogram();
  const values = Array.from({ length: 1000 }, (_, i) => (i + 1) / 1e5); // 10 µs .. 10 ms
  for (const v of values) h.observe(v);
  for (const q of [0.5, 0.99]) {
    const exact = values[Math.ceil(q * values.length) - 1]!;
    const got = h.quantile(q);
    assert.ok(got >= exact && got <= exact * 1.1, `q${q}: ${got} vs ${exact}`);
  }
  assert.equal(new LatencyHistogram().quantile(0.5), 0);
});

test('token bucket admits a burst, then paces to the rate', async () => {
  const bucket = new TokenBucket(1_000_000, 100_000);
  const t0 = performance.now();
  await bucket.take(100_000);
  assert.ok(performance.now() - t0 < 50, 'the burst is immediate');
  await bucket.take(200_000);
  assert.ok(performance.now() - t0 >= 190, 'debt is paid at the rate');
  assert.throws(() => new TokenBucket(0, 1), /rate must be positive/);
});

test('cache directory: flag, then $DADI_CACHE_DIR, then a per-user default', async () => {
  const { resolveCacheDir } = await import('../../../src/io/cache.ts');
  assert.equal(resolveCacheDir('/x', { DADI_CACHE_DIR: '/y' }), '/x');
  assert.equal(resolveCacheDir(undefined, { DADI_CACHE_DIR: '/y' }), '/y');
  const fallback = resolveCacheDir(undefined, { XDG_CACHE_HOME: '/xdg' });
  assert.equal(fallback, process.getuid?.() === 0 ? '/var/cache/dadi' : '/xdg/dadi');
});

test('sequential detector: a stream is sequential from its second consecutive read, among interleaved streams', async () => {
  const { SequentialDetector } = await import('../../../src/io/cache/sequential.ts');
  const d = new SequentialDetector(2);
  const seq = (offset: number, end: number): boolean => d.note(offset, end) >= 0;
  assert.equal(seq(0, 10), false);
  assert.equal(seq(1000, 1010), false);
  assert.equal(d.note(10, 20), 0); // stream A continues, in slot 0
  assert.equal(d.note(1010, 1020), 1); // stream B continues, in slot 1
  assert.equal(seq(500, 510), false); // a random read replaces the oldest slot
  assert.equal(seq(20, 30), false, 'stream A was forgotten');
  assert.equal(seq(5, 6), false);
});
