/**
 * Cold start of bench/app:obd through the dadi snapshotter with and without a trace, as
 * containerd would drive it (remote Prepares, the rootfs Prepare, the overlay mount), then
 * `chroot MOUNT python3 /app/main.py` until it prints `ready`. A first start records the trace
 * (the record-trace labels on the rootfs Prepare); then, RUNS times, interleaved on fresh daemons
 * with empty caches: a cold start without a trace and one replaying it (a non-empty
 * record-trace-path, formats.md §7.8; an acceleration layer replays the same way). Printed: time
 * to ready, pull + prepare + ready and its parts, registry bytes, demand misses, and the replay's own figures.
 * The registry is the bench registry on loopback, or DADI_BENCH_REGISTRY (e.g. the shaped one
 * from ../shared/bench/netem.sh: http://10.231.7.2:5000). Needs root, nbdfuse, `npm run build`,
 * and bench/app:obd in the bench registry (see bench/coldstart.sh).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GrpcConnection, SnapshotsClient } from '../src/daemon/containerd/client.ts';
import { startCountingProxy, type CountingProxy } from '../test/helpers/counting-proxy.ts';
import { mountAll, unmount } from '../test/daemon/snapshotter/conformance.ts';
import type { BenchRow } from './run.ts';
import { dropCaches, imageLayers, median, startDaemon, startRegistry, timeReady, type Cleanup } from './snapshotter.bench.ts';

const RUNS = Number(process.env.RUNS ?? 3);
const RECORD = 'containerd.io/snapshot/overlaybd/record-trace';
const RECORD_PATH = 'containerd.io/snapshot/overlaybd/record-trace-path';

type Image = Awaited<ReturnType<typeof imageLayers>>;
interface Start { pullS: number; prepareS: number; readyS: number; totalS: number; bytes: number; misses: number; mountMs: number; replay?: Record<string, number> }

async function coldStart(base: string, name: string, img: Image, proxy: CountingProxy, labels: Record<string, string>): Promise<Start> {
  const dir = join(base, name);
  await mkdir(dir);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const d = await startDaemon(dir, { cacheDir: join(dir, 'cache') });
  const sn = new SnapshotsClient(new GrpcConnection(d.address));
  try {
    await dropCaches();
    proxy.reset();
    const t0 = performance.now();
    for (const [i, l] of img.layers.entries()) {
      await sn.prepare(`extract-${i} ${l.chainId}`, i === 0 ? '' : img.layers[i - 1]!.chainId,
        { 'containerd.io/snapshot.ref': l.chainId, 'containerd.io/snapshot/image-ref': img.ref, ...l.annotations }).catch((err: Error) => {
        if (!/already exists/.test(err.message)) throw err;
      });
    }
    const t1 = performance.now();
    await mountAll(await sn.prepare('rootfs', img.layers[img.layers.length - 1]!.chainId, labels), mnt);
    const t2 = performance.now();
    const readyS = await timeReady(mnt);
    const totalS = (performance.now() - t0) / 1000;
    const bytes = proxy.bytesFor(img.digests);
    await unmount(mnt);
    await sn.remove('rootfs');
    let detached: Record<string, number> | undefined;
    let mountMs = NaN;
    let replay: Record<string, number> | undefined;
    for (let i = 0; i < 100 && !detached; i++) {
      for (const line of (await d.log()).split('\n')) {
        if (line.includes('"msg":"attached"')) mountMs = (JSON.parse(line) as { timings: { mountMs: number } }).timings.mountMs;
        if (line.includes('"msg":"detached"')) detached = JSON.parse(line) as Record<string, number>;
        if (line.includes('"msg":"trace replay summary at detach"')) replay = JSON.parse(line) as Record<string, number>;
      }
      if (!detached) await sleep(100);
    }
    return { pullS: (t1 - t0) / 1000, prepareS: (t2 - t1) / 1000, readyS, totalS, bytes, mountMs, misses: detached?.demandMisses ?? NaN, ...(replay ? { replay } : {}) };
  } finally {
    await unmount(mnt).catch(() => {});
    sn.conn.close();
    await d.stop();
  }
}

export async function run(): Promise<BenchRow[]> {
  if (process.getuid?.() !== 0) throw new Error('needs root (nbdfuse, loop devices, mount, chroot)');
  const undo: Array<() => unknown> = [];
  const c: Cleanup = { after: (fn) => undo.push(fn) };
  const base = await mkdtemp('/tmp/dtb-');
  try {
    const upstream = process.env.DADI_BENCH_REGISTRY ?? await startRegistry(c);
    const proxy = await startCountingProxy(c as never, upstream);
    const img = await imageLayers(proxy.hostPort);
    const trace = join(base, 'trace');
    await writeFile(trace, '');
    const recorded = await coldStart(base, 'record', img, proxy, { [RECORD]: 'yes', [RECORD_PATH]: trace });
    for (let i = 0; i < 100 && (await readFile(trace)).length === 0; i++) await sleep(100);
    const traceBytes = (await readFile(trace)).length;
    if (traceBytes === 0) throw new Error('the recording start wrote no trace');
    const plain: Start[] = [];
    const traced: Start[] = [];
    for (let r = 0; r < RUNS; r++) {
      plain.push(await coldStart(base, `plain${r}`, img, proxy, {}));
      traced.push(await coldStart(base, `traced${r}`, img, proxy, { [RECORD]: 'yes', [RECORD_PATH]: trace }));
    }
    const m = (xs: Start[], f: (s: Start) => number): number => median(xs.map(f));
    const MB = 1e6;
    const where = process.env.DADI_BENCH_REGISTRY ? `registry ${process.env.DADI_BENCH_REGISTRY}` : 'loopback registry';
    return [
      { name: `trace: cold start to ready with the trace (${where})`, value: m(traced, (s) => s.readyS), unit: 's', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.readyS) } },
      { name: 'trace: cold pull + prepare + ready with the trace', value: m(traced, (s) => s.totalS), unit: 's', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.totalS) } },
      { name: 'trace: lazy pull (remote Prepares) with the trace', value: m(traced, (s) => s.pullS), unit: 's', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.pullS) } },
      { name: 'trace: rootfs Prepare + overlay mount with the trace', value: m(traced, (s) => s.prepareS), unit: 's', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.prepareS) } },
      { name: 'trace: ext4 mount in the rootfs Prepare with the trace', value: m(traced, (s) => s.mountMs), unit: 'ms', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.mountMs) } },
      { name: 'trace: demand misses (after the layers opened) with the trace', value: m(traced, (s) => s.misses), unit: 'misses', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.misses) } },
      { name: 'trace: registry bytes for the start with the trace', value: m(traced, (s) => s.bytes) / MB, unit: 'MB', lowerIsBetter: true,
        peer: { name: 'without a trace', value: m(plain, (s) => s.bytes) / MB }, note: `of ${(img.blobBytes / MB).toFixed(1)} MB of layers` },
      { name: 'trace: replay wall time', value: m(traced, (s) => s.replay?.wallMs ?? NaN), unit: 'ms', lowerIsBetter: true,
        note: `trace ${traceBytes} B (${(traceBytes - 24) / 24} records), recording start ${recorded.readyS.toFixed(2)} s to ready; ` +
          `prefetched ${(m(traced, (s) => s.replay?.prefetchBytes ?? NaN) / MB).toFixed(1)} MB in ${m(traced, (s) => s.replay?.requests ?? NaN)} requests, ` +
          `demand reads hitting prefetched data ${m(traced, (s) => s.replay?.demandHitsPrefetched ?? NaN)} of ${m(traced, (s) => s.replay?.demandReads ?? NaN)}` },
    ];
  } finally {
    for (const fn of undo.reverse()) await fn();
    await rm(base, { recursive: true, force: true });
  }
}
