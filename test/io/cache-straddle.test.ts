/**
 * Reads that straddle a refill-unit boundary: one unit-sized fetch across the boundary instead of
 * both units, with presence tracked per page so the rest of each unit is fetched exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fixture, KiB, MiB } from './cache/fixture.ts';

const U = 256 * KiB;
const PAGE = 4 * KiB;

test('a 4 KiB read straddling two missing units fetches one unit-sized window across the boundary; the rest of each unit comes once', async (t) => {
  const size = 2 * MiB + 10_000; // a short last unit
  const f = await fixture(t, { size });
  const { src, up } = await f.open();
  const dst = new Uint8Array(4 * KiB);
  const readAt = async (offset: number): Promise<void> => {
    dst.fill(0);
    assert.equal(await src.read(dst, offset), dst.length);
    assert.deepEqual(Buffer.from(dst), f.body.subarray(offset, offset + dst.length), `bytes at ${offset}`);
  };

  await readAt(U - 1000);
  assert.deepEqual(f.server.requests, [{ start: U - PAGE, end: 2 * U - PAGE }]);
  assert.equal(up.bytes, U);

  // Unit 0 lacks only what lies before the window; unit 1 only its last page.
  await readAt(0);
  await readAt(2 * U - 6 * KiB);
  assert.deepEqual(f.server.requests.slice(1), [{ start: 0, end: U - PAGE }, { start: 2 * U - PAGE, end: 2 * U }]);
  assert.ok(src.map.has(0) && src.map.has(1), 'units 0 and 1 are whole');
  assert.equal(up.bytes, 2 * U, 'no byte was fetched twice');

  // Reading both whole units again is served locally.
  const both = new Uint8Array(2 * U);
  await src.read(both, 0);
  assert.deepEqual(Buffer.from(both), f.body.subarray(0, 2 * U));
  assert.equal(f.server.requests.length, 3);

  // A straddling read near the end of the blob: the window stops at the blob's end.
  await readAt(8 * U - 1000);
  assert.deepEqual(f.server.requests.at(-1), { start: 8 * U - PAGE, end: size });

  // The background download fills the gaps between windows; every byte is fetched exactly once.
  const result = await src.startBackgroundDownload({ chunk: 2 * U }).done;
  assert.equal(result.ok, true);
  assert.equal(up.bytes, size);
  assert.ok(src.complete);
});

test('a straddling window survives a restart: its pages are present, the rest is fetched', async (t) => {
  const f = await fixture(t, { size: 1 * MiB });
  let { src } = await f.open();
  await src.read(new Uint8Array(8 * KiB), 2 * U - 3 * KiB);
  await src.read(new Uint8Array(8 * KiB), 2 * U + KiB);
  assert.deepEqual(f.server.requests, [{ start: 2 * U - PAGE, end: 3 * U - PAGE }]);
  await f.reopen();
  ({ src } = await f.open());
  const dst = new Uint8Array(U);
  await src.read(dst, 2 * U - PAGE);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(2 * U - PAGE, 3 * U - PAGE));
  assert.equal(f.server.requests.length, 1, 'the window was read back from the cache');
  await src.read(dst, U);
  assert.deepEqual(Buffer.from(dst), f.body.subarray(U, 2 * U));
  assert.deepEqual(f.server.requests.at(-1), { start: U, end: 2 * U - PAGE });
});

test('property: a read of at most one refill unit fetches at most one unit (or its own pages when more), and every byte read is right', async (t) => {
  const unit = 16 * KiB; // 512-byte pages
  const size = 20 * unit + 777;
  const f = await fixture(t, { size, cache: { refillUnit: unit } });
  let run = 0;
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({ offset: fc.integer({ min: 0, max: size - 1 }), length: fc.integer({ min: 1, max: unit }) }), { minLength: 1, maxLength: 30 }),
    async (reads) => {
      // A fresh blob per run: a distinct digest keeps the runs' caches apart.
      const { src, up } = await f.open();
      try {
        await src.discard();
        run++;
        for (const { offset, length } of reads) {
          const before = up.bytes;
          const dst = new Uint8Array(length);
          const n = await src.read(dst, offset);
          assert.equal(n, Math.min(length, size - offset));
          assert.deepEqual(Buffer.from(dst.subarray(0, n)), f.body.subarray(offset, offset + n), `run ${run}: read [${offset}, +${length})`);
          // One unit, or the read's own pages when it is not page-aligned and they span more.
          const pages = Math.ceil((offset + length) / 512) * 512 - Math.floor(offset / 512) * 512;
          assert.ok(up.bytes - before <= Math.max(unit, pages), `run ${run}: read [${offset}, +${length}) fetched ${up.bytes - before} bytes`);
          assert.ok(src.map.rangePresent(offset, offset + n), 'what was read is cached');
        }
      } finally {
        await src.close();
      }
    }), { numRuns: Number(process.env.DADI_PROP_RUNS ?? 60) });
});
