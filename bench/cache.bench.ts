/**
 * Blob cache figures: cold 4 KiB random reads through the cache from an HTTP upstream, warm
 * reads (hits), and background download throughput.
 *
 * The shaped upstream is NOT netem (that needs a network namespace and root): it is the test
 * RangeServer on loopback adding 2 ms per request and a shared 100 Mbit/s token bucket, which is
 * what the rows labelled "100mbit-2ms (in-process shaping)" mean. Peers: the same upstream read
 * directly without a cache (cold), and a plain pread of the cache's own data file (warm).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import { BlobCache } from '../src/io/cache.ts';
import { FileSource } from '../src/io/file.ts';
import type { ByteSource } from '../src/io/types.ts';
import { HttpTestSource } from '../test/io/cache/http-source.ts';
import { RangeServer } from '../test/io/cache/range-server.ts';
import type { BenchRow } from './run.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const UNIT = 256 * KiB;
const SHAPED = '100mbit-2ms (in-process shaping)';

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Deterministic pseudo-random sequence so every run reads the same offsets. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

async function latencies(src: ByteSource, offsets: number[], len: number): Promise<number[]> {
  const dst = new Uint8Array(len);
  const out: number[] = [];
  for (const o of offsets) {
    const t0 = performance.now();
    await src.read(dst, o);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

async function iops(src: ByteSource, size: number, qd: number, seconds: number): Promise<number> {
  const rnd = lcg(7);
  const blocks = size / (4 * KiB);
  let done = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: qd }, async () => {
    const dst = new Uint8Array(4 * KiB);
    while (performance.now() < until) {
      await src.read(dst, Math.floor(rnd() * blocks) * 4 * KiB);
      done++;
    }
  }));
  return done / seconds;
}

async function seqMBps(src: ByteSource, size: number): Promise<number> {
  const dst = new Uint8Array(1 * MiB);
  const t0 = performance.now();
  for (let o = 0; o < size; o += dst.length) await src.read(dst, o);
  return size / MiB / ((performance.now() - t0) / 1000);
}

export async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const size = 64 * MiB;
  const body = randomBytes(size);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'dadi-cache-bench-'));
  const shaped = await RangeServer.start(body, { delayMs: 2, bytesPerSec: 100e6 / 8 });
  const plain = await RangeServer.start(body);
  const cache = await BlobCache.open({ dir, capacityBytes: 1 << 30, refillUnit: UNIT, metricsRegistry: new Registry() });
  try {
    // Cold: one 4 KiB read in each of 120 distinct refill units, in random order.
    const rnd = lcg(42);
    const units = Array.from({ length: size / UNIT }, (_, i) => i).sort(() => rnd() - 0.5).slice(0, 120);
    const offsets = units.map((u) => u * UNIT + Math.floor(rnd() * (UNIT / (4 * KiB))) * 4 * KiB);
    const direct = new HttpTestSource(shaped.url, size);
    const peerCold = await latencies(direct, offsets, 4 * KiB);
    await direct.close();
    const src = await cache.open(digest, size, new HttpTestSource(shaped.url, size), { readAheadBytes: 0 });
    const cold = await latencies(src, offsets, 4 * KiB);
    const peer = { name: 'same upstream, 4 KiB range, no cache' };
    rows.push({ name: `cache cold 4K rand read p50, ${SHAPED}`, value: quantile(cold, 0.5), unit: 'ms', lowerIsBetter: true, peer: { ...peer, value: quantile(peerCold, 0.5) }, note: '(cache fetches a 256 KiB unit per miss)' });
    rows.push({ name: `cache cold 4K rand read p99, ${SHAPED}`, value: quantile(cold, 0.99), unit: 'ms', lowerIsBetter: true, peer: { ...peer, value: quantile(peerCold, 0.99) } });
    await src.close();

    // Background download, unshaped loopback, and through the shaped link (16 MiB of it).
    const bgSrc = await cache.open(digest, size, new HttpTestSource(plain.url, size));
    await bgSrc.flush();
    const t0 = performance.now();
    const r = await bgSrc.startBackgroundDownload({ chunk: 1 * MiB }).done;
    if (!r.ok) throw r.error ?? new Error('background download failed');
    const bgSeconds = (performance.now() - t0) / 1000;
    const whole = new HttpTestSource(plain.url, size);
    const t1 = performance.now();
    await whole.read(new Uint8Array(size), 0);
    const wholeSeconds = (performance.now() - t1) / 1000;
    await whole.close();
    rows.push({ name: 'cache background download (incl. sha256 verify), loopback', value: r.bytesFetched / MiB / bgSeconds, unit: 'MB/s', peer: { name: 'one 64 MiB GET, no cache', value: size / MiB / wholeSeconds }, note: `(${(r.bytesFetched / MiB).toFixed(0)} MiB fetched, 1 MiB chunks)` });

    // Warm: every unit present. The bitmap path (not yet marked complete) and the complete path.
    const peerFile = await FileSource.open(bgSrc.files.dataPath);
    rows.push({ name: 'cache warm 4K rand read QD1 (complete blob)', value: await iops(bgSrc, size, 1, 2), unit: 'IOPS', peer: { name: 'pread of the cache data file (FileSource)', value: await iops(peerFile, size, 1, 2) } });
    rows.push({ name: 'cache warm 4K rand read QD32 (complete blob)', value: await iops(bgSrc, size, 32, 2), unit: 'IOPS', peer: { name: 'pread of the cache data file (FileSource)', value: await iops(peerFile, size, 32, 2) } });
    rows.push({ name: 'cache warm 1M seq read', value: await seqMBps(bgSrc, size), unit: 'MB/s', peer: { name: 'pread of the cache data file (FileSource)', value: await seqMBps(peerFile, size) } });
    const warmLat = await latencies(bgSrc, offsets, 4 * KiB);
    rows.push({ name: 'cache warm 4K read p50', value: warmLat[Math.floor(warmLat.length / 2)]! * 1000, unit: 'us', lowerIsBetter: true });
    await peerFile.close();
    bgSrc.map.complete = false; // measure the per-unit bitmap check on the same data
    rows.push({ name: 'cache warm 4K rand read QD1 (bitmap path)', value: await iops(bgSrc, size, 1, 2), unit: 'IOPS' });
    bgSrc.map.complete = true;
    await bgSrc.close();

    const shapedSize = 16 * MiB;
    const small = randomBytes(shapedSize);
    const smallDigest = `sha256:${createHash('sha256').update(small).digest('hex')}`;
    const shapedSmall = await RangeServer.start(small, { delayMs: 2, bytesPerSec: 100e6 / 8 });
    try {
      const s2 = await cache.open(smallDigest, shapedSize, new HttpTestSource(shapedSmall.url, shapedSize));
      const t2 = performance.now();
      const r2 = await s2.startBackgroundDownload({ chunk: 1 * MiB }).done;
      if (!r2.ok) throw r2.error ?? new Error('background download failed');
      rows.push({ name: `cache background download, ${SHAPED}`, value: shapedSize / MiB / ((performance.now() - t2) / 1000), unit: 'MB/s', note: '(link rate 11.9 MiB/s)' });
      await s2.close();
    } finally {
      await shapedSmall.stop();
    }
  } finally {
    await cache.close();
    await shaped.stop();
    await plain.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
