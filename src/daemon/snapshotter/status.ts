/**
 * The JSON status of a running snapshotter: every device it has attached (the shared read-only
 * mount of an image, or a container's writable disk), with its containers, each layer's cache
 * and verification counters, what it fetched, and its prefetch (trace replay, file list, whole
 * layers) so far. Built on request from the live objects; nothing is kept for it.
 */
import type { BlobStatsSnapshot } from '../../io/cache.ts';
import type { VerifyCounters } from '../../io/verify.ts';
import type { AttachedDevice } from './device.ts';
import type { Snapshotter } from './snapshotter.ts';
import type { PrefetchStatus } from './trace.ts';

export interface LayerStatus {
  name: string;
  /** The blob, for a registry layer. */
  digest?: string;
  blobSize?: number;
  /** Bytes of the layer file after tar and ZFile removal. */
  dataSize: number;
  cache?: Omit<BlobStatsSnapshot, 'digest'> & { presentBytes: number; complete: boolean };
  verify?: VerifyCounters;
  corruptRefetches: number;
}

export interface ImageStatus {
  /** The image reference (or the snapshot name when no layer carries one). */
  image: string;
  /** The snapshot owning the device: the image's topmost dadi layer, or a container's writable snapshot. */
  snapshot: string;
  kind: 'image' | 'writable';
  state: 'attaching' | 'attached';
  /** Snapshots (containers) using the device. */
  containers: string[];
  device?: string;
  mountPoint?: string;
  timingsMs?: Record<string, number>;
  /** Registry bytes and requests for the image's layer blobs (all readers, since the daemon started). */
  fetched?: { bytes: number; requests: number };
  /** Demand reads of the layer blobs since the device attached. */
  demand?: { misses: number; hits: number; missesAfterMount: number };
  layers: LayerStatus[];
  prefetch?: PrefetchStatus;
}

export interface DaemonStatus {
  pid: number;
  uptimeSeconds: number;
  root: string;
  address: string;
  cache: { dir: string; usedBytes: number; capacityBytes: number };
  registry: { bytes: number; requests: number };
  images: ImageStatus[];
}

const PENDING = Symbol('pending');

/** The value of `p` if it has settled with one (undefined if rejected), PENDING while it has not. */
async function peek<T>(p: Promise<T>): Promise<T | undefined | typeof PENDING> {
  return Promise.race([p.catch(() => undefined), new Promise<typeof PENDING>((r) => setImmediate(() => r(PENDING)))]);
}

function layerStatus(l: AttachedDevice['layers'][number]): LayerStatus {
  const c = l.cached;
  let cache: LayerStatus['cache'];
  if (c) {
    const { digest: _d, ...stats } = c.stats.snapshot();
    cache = { ...stats, presentBytes: c.map.presentBytes, complete: c.complete };
  }
  return {
    name: l.name, dataSize: l.data.size, corruptRefetches: l.corruptRefetches,
    ...(c ? { digest: c.digest, blobSize: c.blob.size } : {}),
    ...(cache ? { cache } : {}), ...(l.verify ? { verify: { ...l.verify } } : {}),
  };
}

async function deviceStatus(s: Snapshotter, ownerId: number): Promise<ImageStatus | undefined> {
  const owner = s.db.getById(ownerId);
  const p = s.devices.get(ownerId);
  if (!owner || !p) return undefined;
  const writable = owner.storage === 'writable';
  let image = owner.name;
  try {
    image = s.plan(writable ? owner.parentId : owner.id).block?.imageRef ?? owner.name;
  } catch { /* a chain that cannot be planned still has a device worth showing */ }
  const containers = [...s.devices.users(ownerId)].map((id) => s.db.getById(id)?.name ?? `#${id}`);
  const base = { image, snapshot: owner.name, kind: writable ? 'writable' as const : 'image' as const, containers };
  const d = await peek(p);
  if (d === PENDING) return { ...base, state: 'attaching', layers: [] };
  if (!d) return undefined;
  const prefetch = s.traces.prefetchOf(d.tap);
  return {
    ...base, state: 'attached', device: d.device, ...(d.mountPoint ? { mountPoint: d.mountPoint } : {}),
    timingsMs: Object.fromEntries(Object.entries(d.timings).map(([k, v]) => [k, Math.round(v as number)])),
    fetched: d.fetched(), demand: d.demand(), layers: d.layers.map(layerStatus), ...(prefetch ? { prefetch } : {}),
  };
}

export async function snapshotterStatus(s: Snapshotter): Promise<DaemonStatus> {
  const owners = s.db.all().filter((r) => s.devices.has(r.id)).map((r) => r.id);
  const images = (await Promise.all(owners.map((id) => deviceStatus(s, id)))).filter((x): x is ImageStatus => x !== undefined);
  const { cache, client } = s.ctx;
  return {
    pid: process.pid, uptimeSeconds: Math.round(process.uptime()), root: s.config.root, address: s.config.address,
    cache: { dir: s.config.cache.dir, usedBytes: cache.usedBytes, capacityBytes: cache.capacityBytes },
    registry: { bytes: client.stats.bytes, requests: client.stats.requests },
    images,
  };
}
