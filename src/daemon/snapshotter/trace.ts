/**
 * Trace record and replay in the snapshotter (formats.md §7.3, §7.5, §7.8). A rootfs Prepare with
 * the labels `record-trace: yes` and `record-trace-path: P` records when P is missing or empty
 * and replays when P holds a trace; a rootfs Prepare over an image whose top layer is an
 * acceleration layer replays that layer's `trace` file. Recording, as overlaybd does it, creates
 * `P.lock`; it stops when the lock is removed, when the container's snapshot is removed, after
 * the optional `containerd.io/snapshot/dadi/record-trace-timeout` (seconds), or when the device
 * closes; then P is written and `P.ok` created. A replay runs once per attached image device and
 * starts once the image's file system is mounted and stops when the device detaches (the last
 * container of the image is removed). A rootfs Prepare of an image with no trace prefetches whole
 * layers when the config or a label asks for it (layer-prefetch.ts), through the same replay.
 */
import { access, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../errors.ts';
import { fileListRecords, parseFileList } from '../../image/trace/file-list.ts';
import { decodeTrace, isTraceFile, type TraceRecord } from '../../image/trace/format.ts';
import { TraceRecorder } from '../../image/trace/recorder.ts';
import { planReplay, TraceReplay, type ReplayRequest, type ReplayStats } from '../../image/trace/replay.ts';
import { log } from '../../util/log.ts';
import type { TraceTap } from '../../image/trace/tap.ts';
import type { TracedLayers } from './device.ts';
import type { LowerPlan, SnapshotterCore } from './core.ts';
import { Label } from './labels.ts';
import { layerOrder, parseLayerSelector, planLayerPrefetch, PREFETCH_LAYERS_LABEL, type LayerSelector } from './layer-prefetch.ts';
import type { SnapshotRow } from './metadata.ts';
import { prefetchMetrics, type PrefetchKind, type PrefetchRun } from './prefetch-metrics.ts';

export const TraceLabel = {
  record: 'containerd.io/snapshot/overlaybd/record-trace',
  path: 'containerd.io/snapshot/overlaybd/record-trace-path',
  /** dadi's own: stop recording after this many seconds. */
  timeout: 'containerd.io/snapshot/dadi/record-trace-timeout',
} as const;

/** The file an acceleration layer unpacks (§7.8). */
export const ACCEL_TRACE_FILE = 'trace';

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

interface Recording { recorder: TraceRecorder; path: string; image: string; finish: () => Promise<void> }

type Intent = { kind: 'record'; path: string; timeoutSec: number } | { kind: 'replay'; path: string } | { kind: 'layers'; order: number[] };

/** What a prefetch of an attached image did so far (the status endpoint, `dadi image info --daemon`). */
export type PrefetchStatus = ReplayStats & { kind: PrefetchKind; source: string; cacheMisses: number };

interface Replaying extends PrefetchRun { replay: TraceReplay; source: string }

export class TraceSessions {
  /** By the container snapshot's id. */
  private readonly recordings = new Map<number, Recording>();
  /** By the device's tap (one per attached device). */
  private readonly replays = new WeakMap<TraceTap, Replaying>();

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
    if (accel) return { kind: 'replay', path: join(this.core.layout.fs(accel.id), ACCEL_TRACE_FILE) };
    // No trace: whole layers in priority order, when the label or the config asks for it.
    const sel = this.layerSelector(labels, plan.block.imageRef);
    if (!sel) return undefined;
    const order = layerOrder(sel, plan.block.lowers.map((l) => (l.kind === 'remote' ? l.digest : undefined)));
    return order.length > 0 ? { kind: 'layers', order } : undefined;
  }

  /** The whole-layer selector of a Prepare: its label, else the config; a bad label is logged and ignored. */
  private layerSelector(labels: Record<string, string>, image: string): LayerSelector | undefined {
    const label = labels[PREFETCH_LAYERS_LABEL];
    if (label !== undefined) {
      try {
        return parseLayerSelector(label);
      } catch (err) {
        log.warn({ image, label, err: errorMessage(err) }, 'prefetch-layers label ignored');
        return undefined;
      }
    }
    return parseLayerSelector(this.core.config.prefetch.layers);
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
    const intent = await this.intent(row, plan, labels);
    if (intent) await this.begin(row, device, plan.block.imageRef, intent);
  }

  private async begin(row: SnapshotRow, d: TracedLayers, image: string, intent: Intent): Promise<void> {
    try {
      if (intent.kind === 'record') await this.record(row, d, image, intent.path, intent.timeoutSec);
      else if (intent.kind === 'replay') await this.replay(d, image, intent.path);
      else this.start(d, image, 'layers', `layers ${intent.order.join(',')}`, planLayerPrefetch(intent.order, d.layers.map((l) => l.data.size)));
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
    let kind: PrefetchKind = 'trace';
    if (isTraceFile(buf)) {
      records = decodeTrace(buf, path);
    } else {
      // Not a trace: a list of paths to prefetch (§7.8), mapped to layer ranges through the image's ext4.
      const list = await fileListRecords(device.stack, device.stack.index, device.layers.length, parseFileList(buf.toString('utf8'), path));
      if (list.missing.length > 0) log.warn({ image, path, missing: list.missing.slice(0, 20) }, 'prefetch list: paths not in the image, skipped');
      log.info({ image, path, files: list.files, ranges: list.records.length }, 'prefetch list resolved');
      records = list.records;
      kind = 'file-list';
    }
    const requests = planReplay(records);
    this.start(device, image, kind, path, requests);
    log.info({ image, path, records: records.length, requests: requests.length }, 'replaying a trace');
  }

  /** Starts prefetching `requests` into the device's cache behind demand reads; it stops when the device closes. */
  private start(device: TracedLayers, image: string, kind: PrefetchKind, source: string, requests: ReplayRequest[]): void {
    if (this.replays.has(device.tap)) return;
    const layers = device.layers.map((l, i) => {
      const src = device.tap.layers[i];
      const blob = l.cached?.blob;
      return src ? { source: src, demandIdle: () => blob?.waitDemandIdle() ?? Promise.resolve() } : undefined;
    });
    const cacheMisses = (): number => device.layers.reduce((n, l) => n + (l.cached?.stats.misses ?? 0), 0);
    const missesAtStart = cacheMisses();
    const replay = new TraceReplay(image, requests, layers, device.tap);
    const entry: Replaying = { replay, image, kind, source, stats: () => ({ ...replay.stats(), cacheMisses: cacheMisses() - missesAtStart }) };
    this.replays.set(device.tap, entry);
    prefetchMetrics.started(entry);
    void replay.done.then(() => prefetchMetrics.done(entry));
    device.onClose(`${kind} prefetch of ${image}`, async () => {
      await replay.stop();
      prefetchMetrics.ended(entry);
      log.info({ image, kind, ...entry.stats() }, 'trace replay summary at detach');
    });
    if (kind === 'layers') log.info({ image, layers: source, requests: requests.length, bytes: replay.stats().prefetchBytes }, 'prefetching whole layers');
  }

  /** What the prefetch of the device with this tap did so far, if it has one. */
  prefetchOf(tap: TraceTap): PrefetchStatus | undefined {
    const e = this.replays.get(tap);
    return e && { kind: e.kind, source: e.source, ...e.stats() };
  }

  /** Container snapshot `row` is being removed: its recording (if any) stops and is written. */
  async removed(row: SnapshotRow): Promise<void> {
    await this.recordings.get(row.id)?.finish();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.recordings.values()].map((r) => r.finish()));
  }
}
