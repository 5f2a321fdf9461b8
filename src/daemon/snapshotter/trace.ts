/**
 * Trace record and replay in the snapshotter (formats.md §7.3, §7.5, §7.8). A rootfs Prepare with
 * the labels `record-trace: yes` and `record-trace-path: P` records when P is missing or empty
 * and replays when P holds a trace; a rootfs Prepare over an image whose top layer is an
 * acceleration layer replays that layer's `trace` file. Recording, as overlaybd does it, creates
 * `P.lock`; it stops when the lock is removed, when the container's snapshot is removed, after
 * the optional `containerd.io/snapshot/dadi/record-trace-timeout` (seconds), or when the device
 * closes; then P is written and `P.ok` created. A replay runs once per attached image device and
 * starts once the image's file system is mounted and stops when the device detaches (the last
 * container of the image is removed).
 */
import { access, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Counter, Histogram } from 'prom-client';
import { errorMessage } from '../../errors.ts';
import { fileListRecords, parseFileList } from '../../image/trace/file-list.ts';
import { decodeTrace, isTraceFile, type TraceRecord } from '../../image/trace/format.ts';
import { TraceRecorder } from '../../image/trace/recorder.ts';
import { planReplay, TraceReplay, type ReplayStats } from '../../image/trace/replay.ts';
import { log } from '../../util/log.ts';
import type { TraceTap } from '../../image/trace/tap.ts';
import type { TracedLayers } from './device.ts';
import type { LowerPlan, SnapshotterCore } from './core.ts';
import { Label } from './labels.ts';
import type { SnapshotRow } from './metadata.ts';

export const TraceLabel = {
  record: 'containerd.io/snapshot/overlaybd/record-trace',
  path: 'containerd.io/snapshot/overlaybd/record-trace-path',
  /** dadi's own: stop recording after this many seconds. */
  timeout: 'containerd.io/snapshot/dadi/record-trace-timeout',
} as const;

/** The file an acceleration layer unpacks (§7.8). */
export const ACCEL_TRACE_FILE = 'trace';

const metrics = {
  prefetchBytes: new Counter({ name: 'dadi_trace_prefetch_bytes_total', help: 'Traced bytes requested by trace replay', labelNames: ['image'] }),
  demandHits: new Counter({ name: 'dadi_trace_demand_hits_total', help: 'Demand reads served by bytes a trace replay had prefetched', labelNames: ['image'] }),
  demandReads: new Counter({ name: 'dadi_trace_demand_reads_total', help: 'Demand reads of a layer while its image had a trace replay', labelNames: ['image'] }),
  replaySeconds: new Histogram({ name: 'dadi_trace_replay_seconds', help: 'Wall time of a trace replay', labelNames: ['image'], buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60] }),
};

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

interface Recording { recorder: TraceRecorder; path: string; image: string; finish: () => Promise<void> }

type Intent = { kind: 'record'; path: string; timeoutSec: number } | { kind: 'replay'; path: string };

interface Replaying { replay: TraceReplay; image: string; cacheMisses: () => number; missesAtStart: number }

export class TraceSessions {
  /** By the container snapshot's id. */
  private readonly recordings = new Map<number, Recording>();
  /** By the device's tap (one per attached device). */
  private readonly replays = new WeakMap<TraceTap, Replaying>();
  private readonly attached = new Map<number, TracedLayers>();

  constructor(private readonly core: SnapshotterCore) {}

  /** What a rootfs Prepare asks for: record, replay (labels or an acceleration layer), or nothing. */
  private async intent(row: SnapshotRow, plan: LowerPlan, labels: Record<string, string>): Promise<Intent | undefined> {
    if (!plan.block || labels[Label.targetRef]) return undefined; // not a rootfs (a pull's unpack)
    const path = labels[TraceLabel.record] === 'yes' ? labels[TraceLabel.path] : undefined;
    if (path) {
      const size = await stat(path).then((s) => s.size, () => 0);
      return size === 0 ? { kind: 'record', path, timeoutSec: Number(labels[TraceLabel.timeout] ?? 0) || 0 } : { kind: 'replay', path };
    }
    const accel = row.parentId === null ? undefined : this.core.db.chain(row.parentId).find((s) => s.storage === 'accel');
    return accel ? { kind: 'replay', path: join(this.core.layout.fs(accel.id), ACCEL_TRACE_FILE) } : undefined;
  }

  /**
   * The hook that starts recording on the image device once its layers are open and before the
   * file system is mounted (so the trace holds the mount's reads too, as overlaybd's does), when
   * this Prepare is the one attaching it. A replay starts after the mount (prepared()): started
   * before, it slowed the mount's own dependent reads more than it saved (bench/trace.bench.ts on
   * loopback: rootfs Prepare 1.1 -> 3.1 s, against 0.76 -> 0.81 s started after), and the
   * mount-time ranges it would have brought are by then cached, so the cache skips them.
   */
  async beforeMount(row: SnapshotRow, plan: LowerPlan, labels: Record<string, string>): Promise<((d: TracedLayers) => Promise<void>) | undefined> {
    const intent = await this.intent(row, plan, labels);
    if (intent?.kind !== 'record') return undefined;
    return (d) => this.begin(row, d, plan.block!.imageRef, intent);
  }

  /** After a Prepare attached the image device: starts what beforeMount did not (the device was attached already). */
  async prepared(row: SnapshotRow, plan: LowerPlan, labels: Record<string, string>): Promise<void> {
    if (!plan.block) return;
    const device = await this.core.devices.get(plan.block.owner.id)?.catch(() => undefined);
    if (!device) return;
    this.attached.set(row.id, device);
    const intent = await this.intent(row, plan, labels);
    if (intent) await this.begin(row, device, plan.block.imageRef, intent);
  }

  private async begin(row: SnapshotRow, d: TracedLayers, image: string, intent: Intent): Promise<void> {
    try {
      if (intent.kind === 'record') await this.record(row, d, image, intent.path, intent.timeoutSec);
      else await this.replay(d, image, intent.path);
    } catch (err) {
      // Prefetch is an optimisation: a bad trace never fails the container.
      log.warn({ image, snapshot: row.name, err: errorMessage(err) }, 'trace record/replay not started');
    }
  }

  private async record(row: SnapshotRow, device: TracedLayers, image: string, path: string, timeoutSec: number): Promise<void> {
    if (this.recordings.has(row.id)) return;
    await writeFile(`${path}.lock`, '');
    await rm(`${path}.ok`, { force: true });
    const recorder = new TraceRecorder(device.tap, (layer) => device.layers[layer]?.data.size ?? 0);
    let finished: Promise<void> | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (): Promise<void> => (finished ??= (async () => {
      for (const t of timers) clearInterval(t);
      this.recordings.delete(row.id);
      const bytes = recorder.stop();
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, bytes);
      await rename(tmp, path);
      await writeFile(`${path}.ok`, '');
      await rm(`${path}.lock`, { force: true });
      log.info({ image, path, records: recorder.records.length, tracedBytes: recorder.bytes }, 'trace recorded');
    })().catch((err: unknown) => log.warn({ image, path, err: errorMessage(err) }, 'writing the trace failed')));
    const poll = setInterval(() => { void exists(`${path}.lock`).then((yes) => { if (!yes) void finish(); }); }, 250);
    poll.unref();
    timers.push(poll);
    if (timeoutSec > 0) {
      const t = setTimeout(() => void finish(), timeoutSec * 1000);
      t.unref();
      timers.push(t);
    }
    device.onClose(`trace recording of ${image}`, finish);
    this.recordings.set(row.id, { recorder, path, image, finish });
    log.info({ image, path, snapshot: row.name, timeoutSec }, 'recording a trace');
  }

  private async replay(device: TracedLayers, image: string, path: string): Promise<void> {
    if (this.replays.has(device.tap)) return;
    const buf = await readFile(path).catch(() => undefined);
    if (!buf || buf.length === 0) return;
    let records: TraceRecord[];
    if (isTraceFile(buf)) {
      records = decodeTrace(buf, path);
    } else {
      // Not a trace: a list of paths to prefetch (§7.8), mapped to layer ranges through the image's ext4.
      const list = await fileListRecords(device.stack, device.stack.index, device.layers.length, parseFileList(buf.toString('utf8'), path));
      if (list.missing.length > 0) log.warn({ image, path, missing: list.missing.slice(0, 20) }, 'prefetch list: paths not in the image, skipped');
      log.info({ image, path, files: list.files, ranges: list.records.length }, 'prefetch list resolved');
      records = list.records;
    }
    const layers = device.layers.map((l, i) => {
      const source = device.tap.layers[i];
      const blob = l.cached?.blob;
      return source ? { source, demandIdle: () => blob?.waitDemandIdle() ?? Promise.resolve() } : undefined;
    });
    const cacheMisses = (): number => device.layers.reduce((n, l) => n + (l.cached?.stats.misses ?? 0), 0);
    const replay = new TraceReplay(image, planReplay(records), layers, device.tap);
    const entry = { replay, image, cacheMisses, missesAtStart: cacheMisses() };
    this.replays.set(device.tap, entry);
    void replay.done.then(() => metrics.replaySeconds.observe({ image }, replay.stats().wallMs / 1000));
    device.onClose(`trace replay of ${image}`, async () => {
      await replay.stop();
      const s = replay.stats();
      metrics.prefetchBytes.inc({ image }, s.issuedBytes);
      metrics.demandHits.inc({ image }, s.demandHitsPrefetched);
      metrics.demandReads.inc({ image }, s.demandReads);
      log.info({ image, ...s, cacheMisses: cacheMisses() - entry.missesAtStart }, 'trace replay summary at detach');
    });
    log.info({ image, path, records: records.length, requests: replay.stats().requests }, 'replaying a trace');
  }

  /** Replay figures of the image device container snapshot `id` uses (for info and tests). */
  replayStats(id: number): (ReplayStats & { cacheMisses: number }) | undefined {
    const device = this.attached.get(id);
    const e = device && this.replays.get(device.tap);
    return e && { ...e.replay.stats(), cacheMisses: e.cacheMisses() - e.missesAtStart };
  }

  /** Container snapshot `row` is being removed: its recording (if any) stops and is written. */
  async removed(row: SnapshotRow): Promise<void> {
    this.attached.delete(row.id);
    await this.recordings.get(row.id)?.finish();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.recordings.values()].map((r) => r.finish()));
  }
}
