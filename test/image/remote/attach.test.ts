/**
 * Lazy attach at scale, checked against the same image opened from local files with every blob
 * read recorded (probe.ts): a 100 MiB+ image attaches with under 1% of its bytes, each cold
 * 4 KiB read fetches exactly the refill unit holding the blocks it needs (one request per layer
 * touched; at most one unit's bytes where a block straddles units), and after the background
 * download has verified every blob, reads fetch nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openRemoteImage } from '../../../src/image/remote.ts';
import { tempDir } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { buildObdImage, generateLayer, pushObdImage } from './fixture.ts';
import { openLocalProbe, unitsOf } from './probe.ts';

const MiB = 1 << 20;
const DISK = 4 * 2 ** 30;

/** Deterministic choices (xorshift) so a failure can be replayed. */
function chooser(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  };
}

test('100 MiB+ image: attach fetches < 1%; a cold 4 KiB read fetches only its refill units; verified background download, then no fetches', async (t) => {
  const dir = await tempDir(t);
  const base = await generateLayer(dir, { chunks: 112, chunkSize: MiB, virtualSize: DISK, incompressible: true });
  const top = await generateLayer(dir, { chunks: 16, chunkSize: 64 << 10, virtualSize: DISK, seed: 1 });
  const paths = [base.path, top.path];
  const img = await buildObdImage(paths);
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'gen/big', 'v1', img);
  const probe = await openLocalProbe(paths);
  t.after(() => probe.close());

  const remote = await openRemoteImage(`${reg.hostPort}/gen/big:v1`, {
    cacheDir: join(dir, 'cache'), background: { enable: true, delayMs: 3_600_000, maxBytesPerSec: 0 }, logStatsOnClose: false,
  });
  t.after(() => remote.close());
  const { info } = remote;
  const unit = info.refillUnit!;
  assert.equal(unit, 256 << 10);
  assert.ok(info.imageBytes > 100 * MiB, `image is ${info.imageBytes} bytes`);
  const layerAttach = info.attach.bytes - info.attach.metadataBytes;
  assert.ok(layerAttach / info.imageBytes < 0.01, `attach fetched ${layerAttach} of ${info.imageBytes} layer bytes`);

  const unitBytes = (layer: number, u: number): number => Math.min(unit, img.layers[layer]!.size - u * unit);
  const sumUnits = (layer: number, units: Iterable<number>): number => [...units].reduce((s, u) => s + unitBytes(layer, u), 0);
  // Attach read exactly the units holding what the local open read: headers, trailers, indexes.
  const held = probe.attachRanges.map((r) => unitsOf(r, unit));
  assert.deepEqual(info.layers.map((l) => l.attach.bytes), held.map((h, i) => sumUnits(i, h)));

  const fetched = (): Array<{ bytes: number; requests: number }> => remote.stats().layers.map((l) => ({ ...l.fetched }));
  const pick = chooser(7);
  const reads: number[] = [];
  for (const c of base.offsets.slice(0, 16)) reads.push(c + pick(MiB / 4096) * 4096);
  for (const c of top.offsets.slice(0, 8)) reads.push(c + pick((64 << 10) / 4096) * 4096);
  // And one read whose compressed block is known (from the local probe) to straddle a unit boundary.
  const straddler = await (async () => {
    for (const c of base.offsets.slice(16)) {
      for (let o = c; o < c + MiB; o += 4096) {
        const r = (await probe.read(o, 4096)).ranges[0]!;
        if (unitsOf(r, unit).size === 2) return o;
      }
    }
    throw new Error('no 4 KiB block straddles a unit boundary');
  })();
  reads.push(straddler);
  const buf = Buffer.alloc(4096);
  // A layer whose blob ranges straddled a unit boundary was served by one unit-sized window
  // across it, leaving both units partly present: from then on only the one-unit bound is checked.
  const partial = new Set<number>();
  for (const offset of reads) {
    const before = fetched();
    await remote.disk.read(buf, offset);
    const after = fetched();
    const local = await probe.read(offset, 4096);
    assert.ok(buf.equals(local.bytes), `bytes at ${offset} differ from the local layers`);
    for (const [i, ranges] of local.ranges.entries()) {
      const need = [...unitsOf(ranges, unit)].filter((u) => !held[i]!.has(u));
      const delta = { bytes: after[i]!.bytes - before[i]!.bytes, requests: after[i]!.requests - before[i]!.requests };
      const where = `read at ${offset}, layer ${i}: needs units ${need.join(',')} (blob ranges ${JSON.stringify(ranges)})`;
      // One compressed 4 KiB block: at most one refill unit, even across a unit boundary.
      assert.ok(delta.bytes <= unit, `${where}: fetched ${delta.bytes} bytes`);
      if (partial.has(i)) {
        // Some of the units it needs may already be partly present: only the bound holds.
      } else if (need.length > 1) {
        assert.ok(delta.bytes > 0 && delta.requests === 1, `${where}: one window across the boundary`);
        partial.add(i);
      } else {
        assert.deepEqual(delta, { bytes: sumUnits(i, need), requests: need.length > 0 ? 1 : 0 }, where);
      }
      for (const u of need) held[i]!.add(u);
    }
    assert.ok(local.ranges.some((r) => r.length > 0), `read at ${offset} lies in written data`);
  }

  assert.ok(partial.has(0), 'the straddling read was checked');
  remote.startBackground();
  const results = await remote.downloaded();
  assert.deepEqual(results.map((r) => [r.digest, r.ok]), img.layers.map((l) => [l.digest, true]));
  assert.ok(remote.stats().layers.every((l) => l.complete), 'every layer is complete and verified');
  const done = fetched();
  assert.deepEqual(done.map((f) => f.bytes), img.layers.map((l) => l.size), 'each blob was fetched exactly once in all');
  for (let i = 0; i < 24; i++) {
    const offset = base.offsets[pick(base.offsets.length)]! + pick(MiB / 4096) * 4096;
    await remote.disk.read(buf, offset);
    assert.ok(buf.equals((await probe.read(offset, 4096)).bytes), `bytes at ${offset} after the download`);
  }
  assert.deepEqual(fetched(), done, 'reads after the download fetch nothing');
});
