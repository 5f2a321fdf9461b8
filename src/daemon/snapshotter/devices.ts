/**
 * The attached devices, one per owner: the topmost dadi layer of an image chain for the shared
 * read-only mount every container of that image stacks its overlay on, or a container's own
 * writable disk. Each has a set of users (snapshot ids); the first user attaches, concurrent
 * users wait for the same attach, the last one to leave detaches. Different owners attach in
 * parallel.
 */
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import { attachDevice, type AttachedDevice, type DeviceContext, type DeviceSpec } from './device.ts';

interface Entry { attached: Promise<AttachedDevice>; users: Set<number>; spec: DeviceSpec }

export class DeviceTable {
  private readonly entries = new Map<number, Entry>();

  constructor(private readonly ctx: DeviceContext) {}

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
        timings: roundAll(d.timings) }, 'attached'), () => {
        if (this.entries.get(owner) === entry) this.entries.delete(owner);
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
