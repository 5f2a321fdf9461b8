/**
 * The rootfs Prepare of a lazily pulled dadi image, alone and step by step: the daemon (compiled,
 * a separate process) serves `bench/app:obd` from docker-registry on loopback; the benchmark
 * does what containerd does (one remote Prepare per layer, then the container's Prepare) and
 * reads the daemon's own per-step timings from its debug log (`attached`: open of each layer,
 * NBD server, nbdfuse, loop, ext4 mount; `prepare steps`). Figures, medians of RUNS (5):
 * - cold: a fresh daemon, root and cache; the rootfs Prepare right after the pull (the layer
 *   indexes fetched by the pull may still be in flight);
 * - warm: the daemon restarted on that root and cache (indexes cached), a new container;
 * - shared: a second container of an image already attached (no attach at all).
 * With PEER_MAIN=path/to/dist/cli/main.js (another build, e.g. main's) each run also times that
 * daemon, interleaved run by run, so that a loaded machine weighs on both alike.
 * Needs root, nbdfuse, the bench images (../shared/bench/make-images.sh) and bench/app:obd in
 * the bench registry (see bench/coldstart.sh). `npm run build` first: the daemon runs compiled.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GrpcConnection, SnapshotsClient } from '../src/daemon/containerd/client.ts';
import { imageLayers, median, startDaemon, startRegistry, type Cleanup, type Daemon } from './snapshotter.bench.ts';
import type { BenchRow } from './run.ts';

const RUNS = Number(process.env.RUNS ?? 5);
const PEER_MAIN = process.env.PEER_MAIN;

type Img = Awaited<ReturnType<typeof imageLayers>>;

async function pull(sn: SnapshotsClient, img: Img, tag: string): Promise<void> {
  for (const [i, l] of img.layers.entries()) {
    await sn.prepare(`extract-${i}-${tag} ${l.chainId}`, i === 0 ? '' : img.layers[i - 1]!.chainId,
      { 'containerd.io/snapshot.ref': l.chainId, 'containerd.io/snapshot/image-ref': img.ref, ...l.annotations }).catch((err: Error) => {
      if (!/already exists/.test(err.message)) throw err;
    });
  }
}

async function timePrepare(sn: SnapshotsClient, img: Img, key: string): Promise<number> {
  const t = performance.now();
  await sn.prepare(key, img.layers[img.layers.length - 1]!.chainId);
  return performance.now() - t;
}

/** The step timings of the last attach (`attached`) and rootfs Prepare (`prepare steps`) in the daemon's log. */
async function lastSteps(d: Daemon): Promise<Record<string, number>> {
  const lines = (await d.log()).split('\n').reverse();
  const attach = lines.find((l) => l.includes('"msg":"attached"'));
  const prepare = lines.find((l) => l.includes('"msg":"prepare steps"'));
  const steps = attach ? (JSON.parse(attach) as { steps?: Record<string, number> }).steps ?? {} : {};
  const p = prepare ? (JSON.parse(prepare) as { steps: Record<string, number> }).steps : {};
  return { ...steps, attachTotal: steps.total ?? NaN, insert: p.insert ?? NaN, prepare: p.total ?? NaN };
}

function stepNote(all: Array<Record<string, number>>): string {
  const keys = [...new Set(all.flatMap((s) => Object.keys(s)))].filter((k) => k !== 'total');
  return keys.map((k) => `${k} ${median(all.map((s) => s[k] ?? NaN)).toFixed(0)}`).join(', ') + ' (ms)';
}

interface Figures { cold: number[]; coldSteps: Array<Record<string, number>>; warm: number[]; warmSteps: Array<Record<string, number>>; shared: number[] }

/** One cold, shared and warm measurement with the daemon `main` (undefined: this checkout's). */
async function once(runDir: string, img: Img, main: string | undefined, f: Figures): Promise<void> {
  await mkdir(runDir);
  const cacheDir = join(runDir, 'cache');
  const opts = { cacheDir, ...(main ? { main } : {}) };
  let d = await startDaemon(runDir, opts);
  let sn = new SnapshotsClient(new GrpcConnection(d.address));
  try {
    await pull(sn, img, 'p');
    f.cold.push(await timePrepare(sn, img, 'c1'));
    f.coldSteps.push(await lastSteps(d));
    if (process.env.VERBOSE) process.stderr.write(`  cold ${main ?? 'this'}: ${f.cold.at(-1)!.toFixed(0)} ms ${JSON.stringify(f.coldSteps.at(-1))}\n`);
    f.shared.push(await timePrepare(sn, img, 'c2'));
    await sn.remove('c2');
    await sn.remove('c1');
  } finally {
    sn.conn.close();
    await d.stop();
  }
  d = await startDaemon(runDir, opts);
  sn = new SnapshotsClient(new GrpcConnection(d.address));
  try {
    f.warm.push(await timePrepare(sn, img, 'w1'));
    f.warmSteps.push(await lastSteps(d));
    if (process.env.VERBOSE) process.stderr.write(`  warm ${main ?? 'this'}: ${f.warm.at(-1)!.toFixed(0)} ms ${JSON.stringify(f.warmSteps.at(-1))}\n`);
    await sn.remove('w1');
  } finally {
    sn.conn.close();
    await d.stop();
  }
  await rm(runDir, { recursive: true, force: true });
}

export async function run(): Promise<BenchRow[]> {
  if (process.getuid?.() !== 0) throw new Error('needs root (nbdfuse, loop devices, mount)');
  const undo: Array<() => unknown> = [];
  const c: Cleanup = { after: (fn) => undo.push(fn) };
  const base = await mkdtemp('/tmp/dpb-');
  try {
    const registry = await startRegistry(c);
    const img = await imageLayers(registry.replace(/^http:\/\//, ''));
    const empty = (): Figures => ({ cold: [], coldSteps: [], warm: [], warmSteps: [], shared: [] });
    const mine = empty();
    const peer = empty();
    for (let r = 0; r < RUNS; r++) {
      await once(join(base, `r${r}`), img, undefined, mine);
      if (PEER_MAIN) await once(join(base, `p${r}`), img, PEER_MAIN, peer);
    }
    const ms = (xs: number[]): string => xs.map((v) => v.toFixed(0)).join('/');
    const peerOf = (xs: number[]): BenchRow['peer'] => (PEER_MAIN ? { peer: { name: `daemon ${PEER_MAIN}`, value: median(xs) / 1000 } } : {}).peer;
    const row = (name: string, xs: number[], peerXs: number[], note: string): BenchRow => {
      const p = peerOf(peerXs);
      return { name, value: median(xs) / 1000, unit: 's', lowerIsBetter: true, note: `${ms(xs)} ms${PEER_MAIN ? ` (peer ${ms(peerXs)})` : ''}${note}`, ...(p ? { peer: p } : {}) };
    };
    return [
      row('rootfs Prepare, cold (right after the lazy pull)', mine.cold, peer.cold, `; steps: ${stepNote(mine.coldSteps)}`),
      row('rootfs Prepare, warm (daemon restarted, indexes cached)', mine.warm, peer.warm, `; steps: ${stepNote(mine.warmSteps)}`),
      row('rootfs Prepare, second container of an attached image', mine.shared, peer.shared, ''),
    ];
  } finally {
    for (const fn of undo.reverse()) await fn();
    await rm(base, { recursive: true, force: true });
  }
}
