/**
 * The cost of verified lazy reads: the same remote image (one uncompressed layer, 64 MiB of
 * incompressible data, with its chunk digest table) read cold through the block cache with
 * verification on and off, alternating, in one run, from the embedded registry over loopback (no
 * link shaping: the worst case for verification, since fetching costs least there). Also warm
 * reads (served from the cache, above the verifier) and the conversion-side cost: sealing a layer
 * file with its table vs hashing it once (what conversion did before tables). And the latency
 * verification adds to one 256 KiB fetch (the cache's refill unit) whose bytes arrive over time,
 * as from a 1 Gbit/s link: hashing each chunk as it arrives vs all of them after the last byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { appendDigestTable } from '../src/format/tar/append-table.ts';
import { TarWrapSink } from '../src/format/tar/writer.ts';
import { openRemoteImage } from '../src/image/remote.ts';
import { FileSink } from '../src/io/sink.ts';
import { PLAIN_SOURCE, type ByteSource } from '../src/io/types.ts';
import { VerifiedSource } from '../src/io/verify.ts';
import { startRegistryServer } from '../src/registry/server/server.ts';
import { buildObdImage, generateLayer, pushObdImage } from '../test/image/remote/fixture.ts';
import type { BenchRow } from './run.ts';

const MiB = 1 << 20;
const VSIZE = 256 * MiB;
const ROUNDS = 5;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => Math.floor(((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * n);
}

interface Pass { seqMBps: number; rand4kColdMs: number; rand4kWarmMs: number }

async function pass(ref: string, cacheDir: string, offsets: number[], verify: boolean): Promise<Pass> {
  await rm(cacheDir, { recursive: true, force: true });
  // Sequential: every data MiB in disk order, 1 MiB reads, fresh cache.
  const seq = await openRemoteImage(ref, { cacheDir, background: { enable: false }, logStatsOnClose: false, verify });
  const buf = Buffer.alloc(MiB);
  const sorted = [...offsets].sort((a, b) => a - b);
  let t = performance.now();
  for (const off of sorted) await seq.disk.read(buf, off);
  const seqS = (performance.now() - t) / 1000;
  await seq.close();
  await rm(cacheDir, { recursive: true, force: true });
  // Random 4 KiB reads, cold (fresh cache), then the same reads warm.
  const rnd = await openRemoteImage(ref, { cacheDir, background: { enable: false }, logStatsOnClose: false, verify });
  const next = lcg(7);
  const picks = Array.from({ length: 300 }, () => offsets[next(offsets.length)]! + next(256) * 4096);
  const small = Buffer.alloc(4096);
  const cold: number[] = [];
  for (const off of picks) { t = performance.now(); await rnd.disk.read(small, off); cold.push(performance.now() - t); }
  const warm: number[] = [];
  for (const off of picks) { t = performance.now(); await rnd.disk.read(small, off); warm.push(performance.now() - t); }
  await rnd.close();
  return { seqMBps: (offsets.length * MiB) / seqS / 1e6, rand4kColdMs: median(cold), rand4kWarmMs: median(warm) };
}

async function sealCost(dir: string): Promise<{ sealS: number; hashS: number }> {
  const a = join(dir, 'a.tar');
  const sink = await TarWrapSink.create(await FileSink.create(a));
  for (let i = 0; i < 128; i++) await sink.write(randomBytes(MiB));
  await sink.close();
  const seal: number[] = [];
  const hash: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const b = join(dir, `b${r}.tar`);
    await copyFile(a, b);
    let t = performance.now();
    const h = createHash('sha256');
    await pipeline(createReadStream(b, { highWaterMark: MiB }), h);
    hash.push((performance.now() - t) / 1000);
    t = performance.now();
    await appendDigestTable(b);
    seal.push((performance.now() - t) / 1000);
    await rm(b);
  }
  return { sealS: median(seal), hashS: median(hash) };
}

/**
 * A 256 KiB read from a source whose 16 KiB pieces fall due at 125 MB/s against the clock (a
 * wire: a piece due while the reader was busy is there when it looks), read raw, verified with
 * progress reports (chunks hashed on arrival) and verified without (hashed after the last byte).
 * The reads interleave, so load drift hits all three alike. Median ms per read.
 */
async function arrivalCost(): Promise<{ raw: number; onArrival: number; afterArrival: number }> {
  const CS = 64 << 10;
  const data = randomBytes(64 * CS);
  const digests = new Uint8Array(64 * 32);
  for (let i = 0; i < 64; i++) digests.set(createHash('sha256').update(data.subarray(i * CS, (i + 1) * CS)).digest(), i * 32);
  const PIECE = 16 << 10;
  const gapMs = PIECE / 125e3;
  const deliver = async (dst: Uint8Array, offset: number, onFilled?: (n: number) => void): Promise<number> => {
    onFilled?.(0);
    const start = performance.now();
    for (let at = 0, k = 1; at < dst.length; at += PIECE, k++) {
      const due = start + k * gapMs;
      if (performance.now() < due) {
        await new Promise((r) => setImmediate(r));
        while (performance.now() < due); // sub-millisecond pacing: timers are too coarse
      }
      dst.set(data.subarray(offset + at, offset + Math.min(dst.length, at + PIECE)), at);
      onFilled?.(Math.min(dst.length, at + PIECE));
    }
    return dst.length;
  };
  const plain: ByteSource = { size: data.length, caps: PLAIN_SOURCE, read: (d, o) => deliver(d, o), close: async () => {} };
  const progressive: ByteSource = { ...plain, caps: { ...PLAIN_SOURCE, progressive: true }, readProgressive: (d, o, f) => deliver(d, o, f) };
  const table = { chunkSize: CS, covered: data.length, digests, tail: new Uint8Array(0) };
  const sources = [plain, new VerifiedSource(progressive, table, 'bench'), new VerifiedSource(plain, table, 'bench')];
  const times: number[][] = [[], [], []];
  const buf = new Uint8Array(256 << 10);
  for (let r = 0; r < 300; r++) {
    for (let k = 0; k < 3; k++) {
      const t = performance.now();
      await sources[k]!.read(buf, (r % 16) * buf.length);
      if (r >= 20) times[k]!.push(performance.now() - t);
    }
  }
  return { raw: median(times[0]!), onArrival: median(times[1]!), afterArrival: median(times[2]!) };
}

export async function run(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'dadi-bench-verify-'));
  const reg = await startRegistryServer({ root: join(dir, 'registry'), host: '127.0.0.1', port: 0 });
  try {
    const layer = await generateLayer(dir, { chunks: 64, chunkSize: MiB, virtualSize: VSIZE, incompressible: true, compress: 'none', table: true });
    const img = await buildObdImage([layer.path], { tables: [layer.table] });
    await pushObdImage(reg.hostPort, 'bench/verify', 'v1', img);
    const ref = `${reg.hostPort}/bench/verify:v1`;
    const on: Pass[] = [];
    const off: Pass[] = [];
    await pass(ref, join(dir, 'cache'), layer.offsets, true); // warm-up (JIT, registry page cache), not counted
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first, so a drift in machine load does not favour one side.
      if (r % 2 === 0) { off.push(await pass(ref, join(dir, 'cache'), layer.offsets, false)); on.push(await pass(ref, join(dir, 'cache'), layer.offsets, true)); }
      else { on.push(await pass(ref, join(dir, 'cache'), layer.offsets, true)); off.push(await pass(ref, join(dir, 'cache'), layer.offsets, false)); }
    }
    const m = (xs: Pass[], k: keyof Pass): number => median(xs.map((x) => x[k]));
    const seal = await sealCost(dir);
    const arrival = await arrivalCost();
    return [
      { name: 'verify: cold 1 MiB sequential read, loopback registry', value: m(on, 'seqMBps'), unit: 'MB/s', peer: { name: 'same, verification off', value: m(off, 'seqMBps') },
        note: `(best: ${Math.max(...on.map((p) => p.seqMBps)).toFixed(0)} vs ${Math.max(...off.map((p) => p.seqMBps)).toFixed(0)} MB/s)` },
      { name: 'verify: cold 4 KiB random read latency (median)', value: m(on, 'rand4kColdMs'), unit: 'ms', lowerIsBetter: true, peer: { name: 'same, verification off', value: m(off, 'rand4kColdMs') } },
      { name: 'verify: warm 4 KiB random read latency (median)', value: m(on, 'rand4kWarmMs'), unit: 'ms', lowerIsBetter: true, peer: { name: 'same, verification off', value: m(off, 'rand4kWarmMs') } },
      { name: 'verify: 256 KiB fetch arriving at 125 MB/s, chunks hashed on arrival (median)', value: arrival.onArrival, unit: 'ms', lowerIsBetter: true,
        peer: { name: 'same, not verified', value: arrival.raw }, note: `(hashed after the last byte, as before: ${arrival.afterArrival.toFixed(3)} ms)` },
      { name: 'verify: seal a 128 MiB layer (chunk table + blob sha256)', value: seal.sealS, unit: 's', lowerIsBetter: true, peer: { name: 'blob sha256 only (before tables)', value: seal.hashS } },
    ];
  } finally {
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
