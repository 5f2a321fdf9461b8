import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PresenceMap } from '../../../src/io/cache/presence.ts';
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

test('presence map: a map for another size or unit, or a truncated one, is not trusted', () => {
  const map = new PresenceMap(10_000, 4096);
  map.set(1);
  const bytes = map.encode();
  assert.equal(PresenceMap.decode(bytes, 10_001, 4096), undefined);
  assert.equal(PresenceMap.decode(bytes, 10_000, 2048), undefined);
  assert.equal(PresenceMap.decode(bytes.subarray(0, bytes.length - 1), 10_000, 4096), undefined);
  const junk = Buffer.from(bytes);
  junk.write('XXXX', 0);
  assert.equal(PresenceMap.decode(junk, 10_000, 4096), undefined);
  // Stray bits past the last unit are ignored rather than counted.
  const stray = Buffer.from(bytes);
  stray[stray.length - 1]! |= 0xf8; // 3 units: bits 3..7 describe nothing
  const decoded = PresenceMap.decode(stray, 10_000, 4096)!;
  assert.equal(decoded.presentBytes, 4096);
  assert.equal(decoded.allPresent(1, 1), true);
  assert.equal(decoded.allPresent(0, 2), false);
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
  assert.equal(d.note(0, 10), false);
  assert.equal(d.note(1000, 1010), false);
  assert.equal(d.note(10, 20), true); // stream A continues
  assert.equal(d.note(1010, 1020), true); // stream B continues
  assert.equal(d.note(500, 510), false); // a random read replaces the oldest slot
  assert.equal(d.note(20, 30), false, 'stream A was forgotten');
  assert.equal(d.note(5, 6), false);
});
