/**
 * Lazy attach of a registry image over a shaped link: attach time and bytes, cold 4 KiB random
 * read latency through the block cache, and warm reads.
 *
 * The image: a 64 MiB incompressible layer (64 x 1 MiB chunks scattered over a 4 GiB disk,
 * tar(ZFile lz4 4 KiB(LSMT)), as dadi convert writes) under a small second layer. Links:
 * 100 Mbit/s + 2 ms RTT and 1 Gbit/s + 0.5 ms RTT, by ../shared/bench/netem.sh (kernel tbf in a
 * network namespace, docker-registry inside, userspace delay proxy) when it can run here and no
 * other run owns it, else by an in-process shaping proxy (token bucket + half the RTT each way)
 * in front of the embedded registry (also with DADI_BENCH_NO_NETEM=1). Row names say which.
 * Peers: a full pull of the image's blobs over the same link (what a pull-then-start runtime
 * moves before a container starts), a 4 KiB Range GET of the blob without cache or decompression,
 * and the same reads from the local layer files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openRemoteImage } from '../src/image/remote.ts';
import { TokenBucket } from '../src/io/cache/token-bucket.ts';
import { HttpRangeSource } from '../src/registry/blob-source.ts';
import { RegistryClient } from '../src/registry/client.ts';
import { startRegistryServer } from '../src/registry/server/server.ts';
import { buildObdImage, generateLayer, pushObdImage, type ObdImage } from '../test/image/remote/fixture.ts';
import { openLocalProbe } from '../test/image/remote/probe.ts';
import type { BenchRow } from './run.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const NETEM = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'shared', 'bench', 'netem.sh');
const PROFILES = [{ name: '100mbit-2ms', bitsPerSec: 100e6, rttMs: 2 }, { name: '1gbit-0.5ms', bitsPerSec: 1e9, rttMs: 0.5 }];
type Profile = (typeof PROFILES)[number];

interface Link { label: string; hostPort: string; stop(): Promise<void> }

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function median(xs: number[]): number {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}

function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => Math.floor(((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * n);
}

/** An HTTP proxy adding rtt/2 each way and a shared bandwidth limit on response bodies. */
async function shapingProxy(upstream: string, p: Profile): Promise<{ hostPort: string; stop(): Promise<void> }> {
  const up = new URL(upstream);
  const bucket = new TokenBucket(p.bitsPerSec / 8, Math.max(64 * KiB, p.bitsPerSec / 8 / 500));
  const agent = new Agent({ keepAlive: true });
  const half = (): Promise<void> => new Promise((r) => setTimeout(r, p.rttMs / 2));
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      await half();
      const fwd = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host }, agent },
        (upRes) => {
          void (async () => {
            await half();
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            for await (const chunk of upRes as AsyncIterable<Buffer>) {
              await bucket.take(chunk.length);
              if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
            }
            res.end();
          })().catch(() => res.destroy());
        });
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    hostPort: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); agent.destroy(); }),
  };
}

/** netem.sh's shaped docker-registry, or why it cannot be used. */
function netemLink(p: Profile): Link | string {
  if (process.env.DADI_BENCH_NO_NETEM === '1') return 'DADI_BENCH_NO_NETEM=1';
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(NETEM)) return `${NETEM} not found`;
  if (existsSync('/tmp/dadi-bench-netem/proxy.pid')) return 'a netem link is already up (owned by another run)';
  const up = spawnSync(NETEM, ['up', p.name], { encoding: 'utf8', timeout: 120_000 });
  const down = async (): Promise<void> => void spawnSync(NETEM, ['down'], { stdio: 'ignore', timeout: 60_000 });
  const addr = up.stdout.trim().split('\n').pop();
  if (up.status !== 0 || !addr) {
    void down();
    return `netem.sh up failed: ${up.stderr.trim().split('\n').pop()}`;
  }
  return { label: `netem ${p.name}, docker-registry`, hostPort: addr, stop: down };
}

async function inProcessLink(p: Profile, root: string, img: ObdImage): Promise<Link> {
  const reg = await startRegistryServer({ root, host: '127.0.0.1', port: 0 });
  await pushObdImage(reg.hostPort, 'bench/attach', 'v1', img);
  const proxy = await shapingProxy(reg.url, p);
  return { label: `${p.name} (in-process shaping), embedded registry`, hostPort: proxy.hostPort, stop: async () => { await proxy.stop(); await reg.stop(); } };
}

async function profileRows(link: Link, img: ObdImage, reads: number[], dir: string, warm: boolean, paths: string[]): Promise<BenchRow[]> {
  const ref = `${link.hostPort}/bench/attach:v1`;
  const rows: BenchRow[] = [];
  const open = async (i: number) => openRemoteImage(ref, {
    insecure: true, cacheDir: join(dir, `cache-${i}`), background: { enable: false }, logStatsOnClose: false, statsIntervalMs: 0,
  });
  // Attach, cold each time (fresh cache), median of 3.
  const attach: Array<{ seconds: number; bytes: number }> = [];
  for (let i = 0; i < 3; i++) {
    const ri = await open(i);
    attach.push({ seconds: ri.info.attach.seconds, bytes: ri.info.attach.bytes });
    await ri.close();
  }
  const client = new RegistryClient({ insecure: true });
  const repo = { registry: link.hostPort, repository: 'bench/attach' };
  const t0 = performance.now();
  for (const l of img.layers) await client.blobs.get(repo, l.digest, l.size);
  const pullSeconds = (performance.now() - t0) / 1000;
  const imageMiB = img.layers.reduce((s, l) => s + l.size, 0) / MiB;
  rows.push({ name: `attach time, ${link.label}`, value: median(attach.map((a) => a.seconds)) * 1000, unit: 'ms', lowerIsBetter: true,
    peer: { name: 'full pull of the blobs', value: pullSeconds * 1000 }, note: `(${imageMiB.toFixed(1)} MiB image, 2 layers, median of 3)` });
  rows.push({ name: `attach bytes, ${link.label}`, value: median(attach.map((a) => a.bytes)) / MiB, unit: 'MiB', lowerIsBetter: true,
    peer: { name: 'full pull of the blobs', value: imageMiB } });

  // Cold 4 KiB reads through the cache (256 KiB refill units), one per distinct 1 MiB chunk.
  const ri = await open(9);
  const buf = new Uint8Array(4 * KiB);
  const lat = async (read: (o: number) => Promise<unknown>, offsets: number[]): Promise<number[]> => {
    const out: number[] = [];
    for (const o of offsets) {
      const t = performance.now();
      await read(o);
      out.push(performance.now() - t);
    }
    return out.sort((a, b) => a - b);
  };
  const cold = await lat((o) => ri.disk.read(buf, o), reads);
  const direct = HttpRangeSource.fromDescriptor(client, repo, img.layers[0]!);
  const pick = lcg(3);
  const blobOffsets = reads.map(() => pick(Math.floor((img.layers[0]!.size - 4 * KiB) / 4096)) * 4096);
  const peerCold = await lat((o) => direct.read(buf, o), blobOffsets);
  const peer = { name: '4 KiB Range GET, no cache' };
  rows.push({ name: `cold 4K rand read p50 through the cache, ${link.label}`, value: quantile(cold, 0.5), unit: 'ms', lowerIsBetter: true,
    peer: { ...peer, value: quantile(peerCold, 0.5) }, note: '(fetches a 256 KiB unit, decompresses, checks CRC)' });
  rows.push({ name: `cold 4K rand read p99 through the cache, ${link.label}`, value: quantile(cold, 0.99), unit: 'ms', lowerIsBetter: true,
    peer: { ...peer, value: quantile(peerCold, 0.99) } });

  if (warm) {
    const local = await openLocalProbe(paths);
    const warmLat = await lat((o) => ri.disk.read(buf, o), reads);
    const localLat = await lat((o) => local.disk.read(buf, o), reads);
    const filePeer = { name: 'same stack from local layer files' };
    rows.push({ name: 'warm 4K rand read p50 (cached units)', value: quantile(warmLat, 0.5) * 1000, unit: 'us', lowerIsBetter: true,
      peer: { ...filePeer, value: quantile(localLat, 0.5) * 1000 } });
    rows.push({ name: 'warm 4K rand read p99 (cached units)', value: quantile(warmLat, 0.99) * 1000, unit: 'us', lowerIsBetter: true,
      peer: { ...filePeer, value: quantile(localLat, 0.99) * 1000 } });
    const iops = async (disk: { read(d: Uint8Array, o: number): Promise<unknown> }): Promise<number> => {
      let n = 0;
      const until = performance.now() + 1000;
      while (performance.now() < until) await disk.read(buf, reads[n++ % reads.length]!);
      return n;
    };
    rows.push({ name: 'warm 4K rand read QD1 (cached units)', value: await iops(ri.disk), unit: 'IOPS', peer: { ...filePeer, value: await iops(local.disk) } });
    await local.close();
  }
  await direct.close();
  await ri.close();
  await client.close();
  return rows;
}

export async function run(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'dadi-attach-bench-'));
  try {
    const disk = 4 * 2 ** 30;
    const base = await generateLayer(dir, { chunks: 64, chunkSize: MiB, virtualSize: disk, incompressible: true });
    const top = await generateLayer(dir, { chunks: 16, chunkSize: 64 * KiB, virtualSize: disk, seed: 1 });
    const paths = [base.path, top.path];
    const img = await buildObdImage(paths);
    const pick = lcg(11);
    const reads = base.offsets.slice(0, 48).map((o) => o + pick(MiB / 4096) * 4096);
    const rows: BenchRow[] = [];
    for (const [i, p] of PROFILES.entries()) {
      let link = netemLink(p);
      let why = '';
      if (typeof link === 'string') {
        why = link;
        link = await inProcessLink(p, join(dir, `registry-${i}`), img);
      } else {
        await pushObdImage(link.hostPort, 'bench/attach', 'v1', img);
      }
      try {
        const got = await profileRows(link, img, reads, join(dir, `p${i}`), i === 0, paths);
        if (why && got[0]) got[0].note = `${got[0].note ?? ''} (netem unavailable: ${why})`;
        rows.push(...got);
      } finally {
        await link.stop();
      }
    }
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
