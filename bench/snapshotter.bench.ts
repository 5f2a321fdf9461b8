/**
 * Where a lazy start through the dadi snapshotter spends its time, without containerd: the
 * daemon (compiled, a separate process, fresh root and cache) serves `bench/app:obd` from the
 * bench registry (docker-registry on loopback, behind a byte-counting proxy); the benchmark does
 * what containerd would (one remote Prepare per layer, the rootfs Prepare, the overlay mount),
 * then `chroot MOUNT python3 /app/main.py` until it prints `ready`. Figures, medians of RUNS (3):
 * - lazy pull (the per-layer Prepares), rootfs Prepare (open layers + NBD/nbdfuse/loop + ext4
 *   mount, from the daemon's log), time to `ready` with an empty cache, registry bytes, misses
 *   and the mean cost of one;
 * - the warm start: every block in dadi's cache, page cache dropped, against the peer, the same
 *   start from the flattened rootfs in a plain directory with a cold page cache.
 * Needs root, nbdfuse, the bench images (../shared/bench/make-images.sh) and bench/app:obd in the
 * bench registry (see bench/coldstart.sh). `npm run build` first: the daemon runs compiled.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { GrpcConnection, SnapshotsClient } from '../src/daemon/containerd/client.ts';
import { chainIds } from '../src/image/chain-id.ts';
import { RegistryClient } from '../src/registry/client.ts';
import { startCountingProxy, type CountingProxy } from '../test/helpers/counting-proxy.ts';
import { freePort } from '../test/helpers/registry.ts';
import { mountAll, unmount } from '../test/daemon/snapshotter/conformance.ts';
import type { BenchRow } from './run.ts';

const REPO = resolve(fileURLToPath(import.meta.url), '..', '..');
const BENCH_CACHE = process.env.BENCH_CACHE ?? '/var/cache/dadi-bench';
const IMAGE = process.env.DADI_IMAGE ?? 'bench/app:obd';
const RUNS = Number(process.env.RUNS ?? 3);
const PLAIN_ROOTFS = join(BENCH_CACHE, 'app', 'rootfs');

export interface Cleanup { after(fn: () => unknown): void }

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function dropCaches(): Promise<void> {
  spawn('sync').on('exit', () => {});
  await sleep(200);
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** Runs `chroot dir python3 /app/main.py` and resolves with the seconds until it prints `ready`. */
export function timeReady(dir: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const p = spawn('chroot', [dir, 'python3', '/app/main.py'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!done && out.includes('ready')) {
        done = true;
        resolvePromise((performance.now() - t0) / 1000);
      }
    });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('exit', (code) => { if (!done) reject(new Error(`app exited ${code} before ready: ${out.slice(-500)}`)); });
  });
}

export async function startRegistry(c: Cleanup): Promise<string> {
  const dir = await mkdtemp('/tmp/dsb-reg-');
  const port = await freePort();
  await writeFile(join(dir, 'config.yml'), `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${BENCH_CACHE}/registry\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const p = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  c.after(async () => { p.kill(); await rm(dir, { recursive: true, force: true }); });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false)) return `http://127.0.0.1:${port}`;
    await sleep(50);
  }
  throw new Error('docker-registry did not start');
}

export interface Daemon { address: string; root: string; log(): Promise<string>; stop(): Promise<void> }

export async function startDaemon(base: string, opts: { background?: boolean; cacheDir: string; main?: string }): Promise<Daemon> {
  const root = join(base, 'root');
  const address = join(base, 's.sock');
  const config = join(base, 'config.toml');
  await writeFile(config, `root = "${root}"\naddress = "${address}"\nlogLevel = "debug"\n` +
    `${process.env.DADI_READ_AHEAD_KB ? `readAheadKB = ${process.env.DADI_READ_AHEAD_KB}\n` : ''}` +
    `[cache]\ndir = "${opts.cacheDir}"\n${process.env.DADI_REFILL ? `refillUnit = "${process.env.DADI_REFILL}"\n` : ''}` +
    `[background]\nenable = ${opts.background ? 'true' : 'false'}\ndelaySeconds = 0\nrate = 0\n`);
  const main = opts.main ?? join(REPO, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error('run npm run build first (the daemon runs compiled)');
  const logFile = join(base, 'daemon.log');
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(logFile, 'a');
  const p = spawn(process.execPath, [main, 'snapshotter', '--config', config], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  for (let i = 0; !existsSync(address); i++) {
    if (i > 400 || p.exitCode !== null) throw new Error(`daemon did not start: ${await readFile(logFile, 'utf8')}`);
    await sleep(25);
  }
  return {
    address, root, log: () => readFile(logFile, 'utf8'),
    stop: async () => {
      if (p.exitCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    },
  };
}

interface Layer { chainId: string; annotations: Record<string, string> }

export async function imageLayers(hostPort: string): Promise<{ layers: Layer[]; ref: string; blobBytes: number; digests: string[] }> {
  const client = new RegistryClient();
  try {
    const [repository, tag] = IMAGE.split(':') as [string, string];
    const repo = { registry: hostPort, repository };
    const { manifest } = await client.manifests.resolve(repo, tag);
    const config = JSON.parse((await client.blobs.get(repo, manifest.json.config.digest, manifest.json.config.size)).toString()) as { rootfs: { diff_ids: string[] } };
    const chain = chainIds(config.rootfs.diff_ids);
    return {
      ref: `${hostPort}/${IMAGE}`,
      layers: manifest.json.layers.map((l, i) => ({ chainId: chain[i]!, annotations: l.annotations ?? {} })),
      blobBytes: manifest.json.layers.reduce((s, l) => s + l.size, 0),
      digests: manifest.json.layers.map((l) => l.annotations?.['containerd.io/snapshot/overlaybd/blob-digest'] ?? l.digest),
    };
  } finally {
    await client.close();
  }
}

/** What containerd does for a lazy pull and a container's rootfs; returns the mount and timings. */
async function startRootfs(sn: SnapshotsClient, img: Awaited<ReturnType<typeof imageLayers>>, dir: string, key: string, pull: boolean):
Promise<{ pullS: number; prepareS: number }> {
  const t0 = performance.now();
  if (pull) {
    for (const [i, l] of img.layers.entries()) {
      await sn.prepare(`extract-${i}-${key} ${l.chainId}`, i === 0 ? '' : img.layers[i - 1]!.chainId,
        { 'containerd.io/snapshot.ref': l.chainId, 'containerd.io/snapshot/image-ref': img.ref, ...l.annotations }).catch((err: Error) => {
        if (!/already exists/.test(err.message)) throw err;
      });
    }
  }
  const t1 = performance.now();
  const mounts = await sn.prepare(key, img.layers[img.layers.length - 1]!.chainId);
  const t2 = performance.now();
  await mountAll(mounts, dir);
  return { pullS: (t1 - t0) / 1000, prepareS: (t2 - t1) / 1000 };
}

function attachTimings(log: string): { openMs: number; attachMs: number; mountMs: number } {
  for (const line of log.split('\n').reverse()) {
    if (!line.includes('"msg":"attached"')) continue;
    const e = JSON.parse(line) as { timings: { openMs: number; attachMs: number; mountMs: number } };
    return e.timings;
  }
  return { openMs: NaN, attachMs: NaN, mountMs: NaN };
}

export async function run(): Promise<BenchRow[]> {
  if (process.getuid?.() !== 0) throw new Error('needs root (nbdfuse, loop devices, mount, chroot)');
  if (!existsSync(PLAIN_ROOTFS)) throw new Error(`${PLAIN_ROOTFS} is missing: run ../shared/bench/make-images.sh`);
  const undo: Array<() => unknown> = [];
  const c: Cleanup = { after: (fn) => undo.push(fn) };
  const base = await mkdtemp('/tmp/dsb-');
  try {
    const upstream = await startRegistry(c);
    const proxy: CountingProxy = await startCountingProxy(c as never, upstream);
    const img = await imageLayers(proxy.hostPort);
    const cold = { pull: [] as number[], prepare: [] as number[], ready: [] as number[], bytes: [] as number[], open: [] as number[], attach: [] as number[], mount: [] as number[] };
    const mnt = join(base, 'mnt');
    await mkdir(mnt);
    for (let r = 0; r < RUNS; r++) {
      const runDir = join(base, `run${r}`);
      await mkdir(runDir);
      const d = await startDaemon(runDir, { cacheDir: join(runDir, 'cache') });
      const sn = new SnapshotsClient(new GrpcConnection(d.address));
      try {
        await dropCaches();
        proxy.reset();
        const t = await startRootfs(sn, img, mnt, 'rootfs', true);
        cold.ready.push(await timeReady(mnt));
        cold.pull.push(t.pullS);
        cold.prepare.push(t.prepareS);
        cold.bytes.push(proxy.bytesFor(img.digests));
        const a = attachTimings(await d.log());
        cold.open.push(a.openMs);
        cold.attach.push(a.attachMs);
        cold.mount.push(a.mountMs);
        await unmount(mnt);
        await sn.remove('rootfs');
      } finally {
        await unmount(mnt).catch(() => {});
        sn.conn.close();
        await d.stop();
      }
    }

    // Warm: the cache completed by the background download, then a fresh daemon on that cache.
    const warmDir = join(base, 'warm');
    await mkdir(warmDir);
    const cacheDir = join(warmDir, 'cache');
    let d = await startDaemon(join(warmDir), { cacheDir, background: true });
    let sn = new SnapshotsClient(new GrpcConnection(d.address));
    proxy.reset();
    await startRootfs(sn, img, mnt, 'rootfs', true);
    for (let i = 0; i < 600 && proxy.bytesFor(img.digests) < img.blobBytes; i++) await sleep(200);
    await unmount(mnt);
    await sn.remove('rootfs');
    sn.conn.close();
    await d.stop();
    const warm: number[] = [];
    const warmPrepare: number[] = [];
    const plain: number[] = [];
    d = await startDaemon(warmDir, { cacheDir });
    sn = new SnapshotsClient(new GrpcConnection(d.address));
    const before = proxy.bytesFor(img.digests);
    try {
      for (let r = 0; r < RUNS; r++) {
        await dropCaches();
        const t = await startRootfs(sn, img, mnt, `warm${r}`, false);
        warmPrepare.push(t.prepareS);
        warm.push(await timeReady(mnt));
        await unmount(mnt);
        await sn.remove(`warm${r}`);
        await dropCaches();
        plain.push(await timeReady(PLAIN_ROOTFS));
      }
    } finally {
      await unmount(mnt).catch(() => {});
      sn.conn.close();
      await d.stop();
    }
    const warmFetched = proxy.bytesFor(img.digests) - before;
    const MB = 1e6;
    const coldTotal = cold.pull.map((p, i) => p + cold.prepare[i]! + cold.ready[i]!);
    return [
      { name: 'snapshotter cold: lazy pull (remote Prepares, 3 layers)', value: median(cold.pull), unit: 's', lowerIsBetter: true },
      { name: 'snapshotter cold: rootfs Prepare (attach + mount)', value: median(cold.prepare), unit: 's', lowerIsBetter: true,
        note: `open layers ${median(cold.open).toFixed(0)} ms, NBD+nbdfuse+loop ${median(cold.attach).toFixed(0)} ms, ext4 mount ${median(cold.mount).toFixed(0)} ms` },
      { name: 'snapshotter cold: python3 /app/main.py to ready (first reads)', value: median(cold.ready), unit: 's', lowerIsBetter: true },
      { name: 'snapshotter cold: pull + prepare + ready', value: median(coldTotal), unit: 's', lowerIsBetter: true },
      { name: 'snapshotter cold: registry bytes for the start', value: median(cold.bytes) / MB, unit: 'MB', lowerIsBetter: true,
        note: `of ${(img.blobBytes / MB).toFixed(1)} MB of layers` },
      { name: 'snapshotter warm: rootfs Prepare (cache complete)', value: median(warmPrepare), unit: 's', lowerIsBetter: true },
      { name: 'snapshotter warm: to ready, page cache dropped', value: median(warm), unit: 's', lowerIsBetter: true,
        peer: { name: 'plain directory, page cache dropped', value: median(plain) }, note: `registry bytes while warm: ${warmFetched}` },
    ];
  } finally {
    for (const fn of undo.reverse()) await fn();
    await rm(base, { recursive: true, force: true });
  }
}
