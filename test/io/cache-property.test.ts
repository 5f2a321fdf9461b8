import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { BlobCache, ReadAheadSource, type BackgroundDownload, type CacheHandle } from '../../src/io/cache.ts';
import type { ByteSource } from '../../src/io/types.ts';
import { tempDir } from '../helpers/env.ts';
import { CountingSource, HttpTestSource } from './cache/http-source.ts';
import { makeBlob } from './cache/fixture.ts';
import { RangeServer } from './cache/range-server.ts';

const UNIT = 16 * 1024;
const SIZE = 37 * UNIT + 333;

type Step =
  | { kind: 'reads'; reads: Array<{ offset: number; length: number }> }
  | { kind: 'restart' }
  | { kind: 'fault' }
  | { kind: 'background' };

const read = fc.record({ offset: fc.integer({ min: 0, max: SIZE + 100 }), length: fc.integer({ min: 0, max: 3 * UNIT + 7 }) });
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('reads' as const), reads: fc.array(read, { minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'restart' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'fault' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'background' as const }) },
);

test('property: random concurrent reads with restarts, faults and background fills always equal the source', async (t) => {
  const root = await tempDir(t, 'dadi-cache-prop-');
  const { body, digest } = makeBlob(SIZE);
  const server = await RangeServer.start(body);
  t.after(() => server.stop());

  await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), fc.boolean(), async (steps, readAhead) => {
    const dir = await mkdtemp(join(root, 'run-'));
    const openCache = () => BlobCache.open({ dir, capacityBytes: 1 << 30, refillUnit: UNIT, metricsRegistry: null });
    let cache = await openCache();
    let up = new CountingSource(new HttpTestSource(server.url, SIZE));
    let download: BackgroundDownload | undefined;
    const withReadAhead = (h: CacheHandle): ByteSource => (readAhead ? new ReadAheadSource(h, 3 * UNIT) : h);
    let src: CacheHandle = await cache.open(digest, SIZE, up);
    let reader = withReadAhead(src);
    try {
      for (const s of steps) {
        if (s.kind === 'restart') {
          await cache.close();
          cache = await openCache();
          up = new CountingSource(new HttpTestSource(server.url, SIZE));
          src = await cache.open(digest, SIZE, up);
          reader = withReadAhead(src);
        } else if (s.kind === 'fault') {
          up.failNext = 1;
        } else if (s.kind === 'background') {
          download = src.startBackgroundDownload({ chunk: 2 * UNIT });
        } else {
          await Promise.all(s.reads.map(async ({ offset, length }) => {
            const dst = new Uint8Array(length);
            let n: number;
            try {
              n = await reader.read(dst, offset);
            } catch (err) {
              // The only acceptable failure is the injected upstream fault, reported as EIO.
              assert.match((err as Error).message, /EIO: blob sha256:.*injected upstream failure/);
              return;
            }
            const want = Math.max(0, Math.min(length, SIZE - offset));
            assert.equal(n, want);
            assert.deepEqual(Buffer.from(dst.subarray(0, n)), body.subarray(offset, offset + n));
          }));
        }
      }
      // Whatever the history, everything the cache claims to hold is the source's bytes.
      up.failNext = 0;
      await download?.stop();
      const before = up.requests;
      const map = src.map;
      for (let u = map.units - 1; u >= 0; u--) { // backwards: no sequential stream, no read-ahead
        if (!map.has(u)) continue;
        const dst = new Uint8Array(map.unitBytes(u));
        await src.read(dst, u * UNIT);
        assert.deepEqual(Buffer.from(dst), body.subarray(u * UNIT, u * UNIT + dst.length));
      }
      assert.equal(up.requests, before, 'present units are served without upstream');
    } finally {
      await cache.close();
    }
  }), { numRuns: Number(process.env.DADI_PROP_RUNS ?? 40) });
});
