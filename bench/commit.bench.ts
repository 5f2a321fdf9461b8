/**
 * Commit time of a writable layer holding 50,000 random 4 KiB writes over a 64 GiB virtual disk:
 * plain, lz4 and zstd ZFile output; also the write phase (50,000 writes + flush) and the reopen
 * (index log replay). Peer: the zstd / lz4 command-line tools compressing the plain committed
 * file (same bytes, same run). Upstream overlaybd-commit figures on this machine class, for
 * reference: 0.37 s plain, 0.54 s lz4, 1.13 s zstd. The "sync source" rows commit the same layer
 * with its data file opened as a FileSource, which declares synchronous reads, so commit gathers
 * with synchronous preads (the writable layer's own data source reads only through the pool).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchRow } from './run.ts';
import { commitToFile } from '../src/format/lsmt/commit-file.ts';
import { FileSource } from '../src/io/file.ts';
import { createWritableLayer, openWritableLayer } from '../src/format/lsmt/writable.ts';

const WRITES = 50_000;
const VSIZE = 64 * 2 ** 30;
const BLOCK = 4096;

function seconds(t0: number): number {
  return (performance.now() - t0) / 1000;
}

function timeTool(cmd: string, args: string[]): number | undefined {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.status === 0 ? seconds(t0) : undefined;
}

export async function run(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'dadi-bench-commit-'));
  try {
    const data = join(dir, 'w.data');
    const index = join(dir, 'w.index');
    // Half random bytes, half text-like repeats: compressible but not trivially.
    const pool = new Uint8Array(BLOCK * 256);
    for (let i = 0; i < pool.length; i++) pool[i] = i % 8192 < 4096 ? (Math.imul(i, 2654435761) >>> 24) : 97 + (i % 26);
    let seed = 42;
    const rnd = (): number => { seed = (seed + 0x6d2b79f5) >>> 0; let t = Math.imul(seed ^ (seed >>> 15), seed | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return (t ^ (t >>> 14)) >>> 0; };

    const layer = await createWritableLayer(data, index, { virtualSize: VSIZE });
    let t0 = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < WRITES; i++) {
      const blockNo = (rnd() * 4 + (rnd() & 3)) % (VSIZE / BLOCK);
      const src = pool.subarray((i % 256) * BLOCK, (i % 256 + 1) * BLOCK);
      inFlight.push(layer.write(src, blockNo * BLOCK));
      if (inFlight.length >= 32) await Promise.all(inFlight.splice(0));
    }
    await Promise.all(inFlight);
    await layer.flush();
    const writeS = seconds(t0);
    await layer.close();

    t0 = performance.now();
    const reopened = await openWritableLayer(data, index);
    const reopenS = seconds(t0);
    const src = { index: reopened.snapshot(), data: reopened.data, virtualSize: reopened.virtualSize, parentUuid: reopened.parentUuid };

    const rows: BenchRow[] = [
      { name: 'writable layer: 50,000 random 4K writes (QD32) + flush', value: writeS, unit: 's', lowerIsBetter: true },
      { name: 'writable layer: reopen (replay 50,000-record log)', value: reopenS, unit: 's', lowerIsBetter: true },
    ];
    const plainOut = join(dir, 'plain.lsmt');
    t0 = performance.now();
    await commitToFile(src, plainOut);
    rows.push({ name: 'commit 50,000 x 4K (64 GiB vdisk): plain', value: seconds(t0), unit: 's', lowerIsBetter: true, note: 'upstream overlaybd-commit: ~0.37 s' });

    // Start the shared compression workers first: their one-time start-up (from source, each
    // boots tsx) is not commit time. The warm-up layer must be larger than what the ZFile writer
    // compresses in-thread (4 MiB), or the workers would first start inside the timed lz4 commit.
    const warmExtents = 4;
    const warm = {
      index: {
        count: warmExtents, offset: Float64Array.from({ length: warmExtents }, (_, i) => i * 8192),
        length: new Uint32Array(warmExtents).fill(8192), moffset: new Float64Array(warmExtents).fill(8),
        zeroed: new Uint8Array(warmExtents), tag: new Uint8Array(warmExtents),
      },
      data: reopened.data, virtualSize: 1 << 30,
    };
    await commitToFile(warm, join(dir, 'warm.lz4'), { compress: 'lz4' });
    await commitToFile(warm, join(dir, 'warm.zst'), { compress: 'zstd' });

    for (const [algo, ref, tool, toolArgs] of [
      ['lz4', '0.54', 'lz4', ['-q', '-f', plainOut, join(dir, 'peer.lz4')]],
      ['zstd', '1.13', 'zstd', ['-q', '-f', '-3', plainOut, '-o', join(dir, 'peer.zst')]],
    ] as const) {
      t0 = performance.now();
      await commitToFile(src, join(dir, `c.${algo}`), { compress: algo, blockSize: 4096 });
      const value = seconds(t0);
      const peer = timeTool(tool, [...toolArgs]);
      rows.push({
        name: `commit 50,000 x 4K (64 GiB vdisk): ZFile ${algo} 4K`, value, unit: 's', lowerIsBetter: true,
        ...(peer === undefined ? {} : { peer: { name: `${tool} CLI on the plain commit`, value: peer } }),
        note: `upstream overlaybd-commit -z: ~${ref} s`,
      });
    }

    const syncData = await FileSource.open(data);
    try {
      const syncSrc = { ...src, data: syncData };
      for (const [algo, ref] of [[undefined, '0.37'], ['lz4', '0.54'], ['zstd', '1.13']] as const) {
        t0 = performance.now();
        await commitToFile(syncSrc, join(dir, `s.${algo ?? 'plain'}`), algo ? { compress: algo, blockSize: 4096 } : {});
        rows.push({
          name: `commit 50,000 x 4K (64 GiB vdisk): ${algo ? `ZFile ${algo} 4K` : 'plain'}, sync source`, value: seconds(t0), unit: 's',
          lowerIsBetter: true, note: `upstream overlaybd-commit${algo ? ' -z' : ''}: ~${ref} s`,
        });
      }
    } finally {
      await syncData.close();
    }
    await reopened.close();
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
