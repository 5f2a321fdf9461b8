/**
 * The attached devices, one per owner: the topmost dadi layer of an image chain for the shared
 * read-only mount every container of that image stacks its overlay on, or a container's own
 * writable disk. Each has a set of users (snapshot ids); the first user attaches, concurrent
 * users wait for the same attach, the last one to leave detaches. Different owners attach in
 * parallel.
 */
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import type { ChainLayer } from '../../image/chain/layer.ts';
import { attachDevice, warmLayer, type AttachedDevice, type DeviceContext, type DeviceSpec, type LowerLayer } from './device.ts';

interface Entry { attached: Promise<AttachedDevice>; users: Set<number>; spec: DeviceSpec }

/**
 * How long a layer opened at pull time stays open for the rootfs Prepare that usually follows
 * within seconds: that attach then shares its cached blob (no reopen of the cache files, no
 * wait for the close's syncs) and finds its index fetched or being fetched.
 */
const WARM_HOLD_MS = 60_000;

interface Warm { layer: Promise<ChainLayer | undefined>; timer: NodeJS.Timeout }

export class DeviceTable {
  private readonly entries = new Map<number, Entry>();
  /** Layers opened by a lazy pull, by blob digest, until an attach has used them or the hold ends. */
  private readonly warmed = new Map<string, Warm>();

  constructor(private readonly ctx: DeviceContext) {}

  /** Starts fetching a pulled layer's header and index and keeps it open for a while (WARM_HOLD_MS). */
  warm(lower: LowerLayer): void {
    if (lower.kind !== 'remote' || this.warmed.has(lower.digest)) return;
    const layer = warmLayer(lower, this.ctx).catch((err: unknown) => {
      log.warn({ layer: lower.name, err: errorMessage(err) }, 'fetching a pulled layer\'s index early failed');
      return undefined;
    });
    const timer = setTimeout(() => void this.unwarm(lower.digest), WARM_HOLD_MS);
    timer.unref();
    this.warmed.set(lower.digest, { layer, timer });
  }

  private async unwarm(digest: string): Promise<void> {
    const w = this.warmed.get(digest);
    if (!w) return;
    this.warmed.delete(digest);
    clearTimeout(w.timer);
    const layer = await w.layer;
    await layer?.close().catch((err: unknown) => log.warn({ digest, err: errorMessage(err) }, 'closing a pulled layer'));
  }

  /** The owner's device, attached if it is not yet; `user` is counted as using it. */
  async acquire(owner: number, user: number, spec: () => DeviceSpec): Promise<AttachedDevice> {
    let e = this.entries.get(owner);
    if (!e) {
      const s = spec();
      const started = performance.now();
      e = { attached: attachDevice(s, this.ctx), users: new Set(), spec: s };
      const entry = e;
      this.entries.set(owner, entry);
      entry.attached.then((d) => log.info({ device: d.device, mountPoint: d.mountPoint, name: s.name, ms: Math.round(performance.now() - started),
        timings: roundAll(d.timings), steps: d.steps }, 'attached'), () => {
        if (this.entries.get(owner) === entry) this.entries.delete(owner);
      }).finally(() => {
        // The device holds its own handles now (or failed): the pull's are no longer needed.
        for (const l of s.lowers) if (l.kind === 'remote') void this.unwarm(l.digest);
      });
    }
    e.users.add(user);
    try {
      return await e.attached;
    } catch (err) {
      e.users.delete(user);
      throw err;
    }
  }

  /** Whether the owner's device is attached (or attaching). */
  has(owner: number): boolean {
    return this.entries.has(owner);
  }

  get(owner: number): Promise<AttachedDevice> | undefined {
    return this.entries.get(owner)?.attached;
  }

  users(owner: number): ReadonlySet<number> {
    return this.entries.get(owner)?.users ?? new Set();
  }

  /**
   * `user` stops using the owner's device; the last user detaches it. Without `force` a busy
   * mount fails the call and the user stays counted; with it the mount is detached lazily.
   */
  async release(owner: number, user: number, opts: { force?: boolean } = {}): Promise<void> {
    const e = this.entries.get(owner);
    if (!e || !e.users.has(user)) return;
    if (e.users.size > 1) {
      e.users.delete(user);
      return;
    }
    const d = await e.attached.catch(() => undefined);
    if (d) {
      await d.close(opts);
      log.info({ name: e.spec.name, device: d.device, fetchedBytes: d.fetched().bytes, fetchRequests: d.fetched().requests, ...demandCounts(d) }, 'detached');
    }
    e.users.delete(user);
    if (this.entries.get(owner) === e && e.users.size === 0) this.entries.delete(owner);
  }

  /** Detaches everything (daemon shutdown): forced, since nothing can be served afterwards. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.warmed.keys()].map((d) => this.unwarm(d)));
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map(async (e) => {
      const d = await e.attached.catch(() => undefined);
      await d?.close({ force: true }).catch((err: unknown) => log.warn({ err: errorMessage(err), name: e.spec.name }, 'detach at shutdown'));
    }));
  }
}

function demandCounts(d: AttachedDevice): Record<string, number> {
  const c = d.demand();
  return { demandMisses: c.misses, demandHits: c.hits, demandMissesAfterMount: c.missesAfterMount };
}

function roundAll(t: object): Record<string, number> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v as number)]));
}
