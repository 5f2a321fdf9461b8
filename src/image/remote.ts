/**
 * Lazy attach of a dadi (overlaybd-format) image from any OCI registry: fetch the manifest
 * (choosing the platform from an index) and config, recognise every layer by its overlaybd
 * annotations, open each layer blob by Range through the persistent cache reading only what
 * locates its index, and stack them. No layer data moves until the disk is read; afterwards a
 * throttled background download fills the cache and verifies each blob's digest, after which the
 * blob is served locally. `oci:DIR[:TAG]` layouts open the same way from local blob files.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { LayerStack } from '../disk/layer-stack.ts';
import { errorMessage } from '../errors.ts';
import { createWritableLayer, openWritableLayer } from '../format/lsmt/writable.ts';
import type { WritableLayer } from '../format/lsmt/types.ts';
import { BlobCache, resolveCacheDir, type BackgroundResult } from '../io/cache.ts';
import { FileSource } from '../io/file.ts';
import type { Disk } from '../io/types.ts';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.ts';
import type { Credentials } from '../registry/credentials.ts';
import type { Descriptor, ImageManifest, Platform } from '../registry/oci.ts';
import { formatReference, parseReference, referenceTarget } from '../registry/reference.ts';
import { log } from '../util/log.ts';
import { AnnotationError, isTurboVersion, recogniseLayer, type OverlaybdLayer } from './annotations.ts';
import { isOciLayoutRef, OciLayout, parseOciLayoutRef } from './oci-layout.ts';
import { openLocalLayer, openRemoteLayer, type RemoteLayer } from './remote/layer.ts';
import { imageStats, logImageStats, type ImageStats } from './remote/stats.ts';

export { formatImageInfo, type ImageStats } from './remote/stats.ts';
export { isImageReference } from './remote/reference.ts';

export interface BackgroundOptions {
  enable: boolean;
  /** Bandwidth limit for the whole image, bytes per second (0: unlimited). */
  maxBytesPerSec?: number;
  /** Wait this long after attach before starting (reads at start-up come first). */
  delayMs?: number;
}

export interface RemoteImageOptions {
  insecure?: boolean;
  /** Cache directory: this, else $DADI_CACHE_DIR, else the per-user default. */
  cacheDir?: string;
  cacheCapacity?: number;
  refillUnit?: number;
  background?: BackgroundOptions;
  credentials?: Credentials;
  platform?: Platform;
  /** Transport tuning (timeouts, retries); ignored when `client` is given. */
  clientOptions?: RegistryClientOptions;
  /** A shared client (the daemon's); otherwise one is made and closed with the image. */
  client?: RegistryClient;
  /** A shared cache; otherwise one is opened on the cache dir and closed with the image. */
  cache?: BlobCache;
  /** Layers opened at once while attaching (default 8). */
  parallel?: number;
  /** A writable layer on top, kept in DIR (writable_data + writable_index, created if absent). */
  writableDir?: string;
  /** Log fetch and cache counters at debug level this often (default 60 s; 0: never). */
  statsIntervalMs?: number;
  /** Log the counters at info level on close (default true). */
  logStatsOnClose?: boolean;
}

export interface RemoteLayerInfo {
  /** Position in the manifest's layers. */
  index: number;
  mediaType: string;
  /** The manifest descriptor's digest and size. */
  digest: string;
  size: number;
  /** The overlaybd blob actually read (annotations). */
  blobDigest: string;
  blobSize: number;
  version: string;
  fsType?: string;
  /** Detected wrappers, outermost first: `tar`, `zfile(lz4, 4096, crc)`. */
  wrappers: string[];
  uuid: string;
  parentUuid: string;
  virtualSize: number;
  segments: number;
  attach: { bytes: number; requests: number; seconds: number };
}

export interface RemoteImageInfo {
  reference: string;
  /** `registry` or `oci-layout`. */
  source: 'registry' | 'oci-layout';
  manifestDigest: string;
  manifestMediaType: string;
  indexDigest?: string;
  indexMediaType?: string;
  configDigest: string;
  configMediaType: string;
  platform: Platform;
  diskSize: number;
  writable: boolean;
  layers: RemoteLayerInfo[];
  /** Trace layers the disk leaves out. */
  accelerationLayers: Array<{ index: number; digest: string; size: number }>;
  /** Sum of the layer blob sizes: what a full pull would transfer. */
  imageBytes: number;
  attach: { seconds: number; bytes: number; requests: number; metadataBytes: number; metadataRequests: number };
  cacheDir?: string;
  refillUnit?: number;
}

export interface RemoteImage {
  disk: Disk;
  info: RemoteImageInfo;
  /** Fetch and cache counters now. */
  stats(): ImageStats;
  /** Resolves when every layer's background download has ended (never started: empty). */
  downloaded(): Promise<BackgroundResult[]>;
  /** Starts the background download now instead of after the delay. */
  startBackground(): void;
  close(): Promise<void>;
}

const DEFAULT_CAPACITY = 4 * 1024 ** 3;
const DEFAULT_BACKGROUND: Required<BackgroundOptions> = { enable: true, maxBytesPerSec: 32 << 20, delayMs: 30_000 };

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

interface Recognised { d: Descriptor; index: number; obd: OverlaybdLayer }

/** Every layer's overlaybd view; refuses images that are not dadi/overlaybd. */
export function recogniseManifest(manifest: ImageManifest, reference: string): { disk: Recognised[]; acceleration: Recognised[] } {
  if (manifest.layers.length === 0) throw new Error(`${reference}: the image has no layers`);
  const disk: Recognised[] = [];
  const acceleration: Recognised[] = [];
  for (const [index, d] of manifest.layers.entries()) {
    const where = `${reference}: layer ${index} (${d.digest})`;
    const obd = recogniseLayer(d, where);
    if (!obd) {
      throw new AnnotationError(`${reference} is not a dadi/overlaybd image: ${where.slice(reference.length + 2)} has no ` +
        `containerd.io/snapshot/overlaybd/blob-digest annotation (media type ${d.mediaType}). ` +
        `Convert it first: dadi convert ${reference} <destination>`);
    }
    if (isTurboVersion(obd.version)) {
      throw new AnnotationError(`${where}: overlaybd version ${obd.version} (turboOCI) is not supported; convert the image to native overlaybd with dadi convert`);
    }
    (obd.accelerationLayer ? acceleration : disk).push({ d, index, obd });
  }
  if (disk.length === 0) throw new Error(`${reference}: every layer is an acceleration (trace) layer; there is no disk`);
  return { disk, acceleration };
}

function describeWrappers(layer: RemoteLayer): string[] {
  return layer.wrappers.map((w) => (w.kind === 'tar' ? 'tar' : `zfile(${w.algo}, ${w.blockSize}${w.checksum ? ', crc' : ''})`));
}

function platformOf(config: unknown, fallback: Platform): Platform {
  const c = config as { os?: unknown; architecture?: unknown; variant?: unknown };
  if (typeof c?.os !== 'string' || typeof c.architecture !== 'string') return fallback;
  return { os: c.os, architecture: c.architecture, ...(typeof c.variant === 'string' ? { variant: c.variant } : {}) };
}

async function openUpper(dir: string, lowers: number): Promise<WritableLayer> {
  const data = join(dir, 'writable_data');
  const index = join(dir, 'writable_index');
  const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);
  const [hasData, hasIndex] = await Promise.all([exists(data), exists(index)]);
  if (hasData !== hasIndex) throw new Error(`${dir}: has only one of writable_data / writable_index; refusing to guess`);
  if (!hasData) await (await createWritableLayer(data, index, { virtualSize: 0, tag: lowers })).close();
  return openWritableLayer(data, index, { tag: lowers });
}

/** Attaches `ref` (a registry reference or `oci:DIR[:TAG]`) lazily; see the module comment. */
export async function openRemoteImage(ref: string, opts: RemoteImageOptions = {}): Promise<RemoteImage> {
  const started = performance.now();
  const toClose: Array<() => Promise<unknown>> = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of toClose.splice(0).reverse()) await fn().catch((err) => log.warn({ err: errorMessage(err) }, 'close after failed attach'));
  };
  try {
    if (isOciLayoutRef(ref)) return await openLayoutImage(ref, opts, started, toClose);
    return await openRegistryImage(ref, opts, started, toClose);
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function openRegistryImage(ref: string, opts: RemoteImageOptions, started: number,
  toClose: Array<() => Promise<unknown>>): Promise<RemoteImage> {
  const parsed = parseReference(ref);
  const reference = formatReference(parsed);
  const client = opts.client ?? new RegistryClient({
    ...opts.clientOptions,
    ...(opts.insecure ? { insecure: true } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
  });
  if (!opts.client) toClose.push(() => client.close());
  const before = { bytes: client.stats.bytes, requests: client.stats.requests };
  const resolved = await client.manifests.resolve(parsed, referenceTarget(parsed), opts.platform ?? client.platform);
  const manifest = resolved.manifest.json;
  const { disk: diskLayers, acceleration } = recogniseManifest(manifest, reference);
  const configBytes = await client.blobs.get(parsed, manifest.config.digest, manifest.config.size);
  const config = parseConfig(configBytes, reference, manifest.config.digest);
  checkDiffIds(config, manifest, reference);

  const cacheDir = resolveCacheDir(opts.cacheDir);
  const cache = opts.cache ?? await BlobCache.open({
    dir: cacheDir, capacityBytes: opts.cacheCapacity ?? DEFAULT_CAPACITY,
    ...(opts.refillUnit ? { refillUnit: opts.refillUnit } : {}),
  });
  if (!opts.cache) toClose.push(() => cache.close());
  const metadata = { bytes: client.stats.bytes - before.bytes, requests: client.stats.requests - before.requests };

  const attachOne = async (r: Recognised): Promise<{ layer: RemoteLayer; info: RemoteLayerInfo }> => {
    const t0 = performance.now();
    const b0 = client.stats.blob(r.obd.blobDigest);
    const snap = { bytes: b0.bytes, requests: b0.requests };
    const layer = await openRemoteLayer(client, parsed, { digest: r.obd.blobDigest, size: r.obd.blobSize }, cache,
      `${reference} layer ${r.index} (${r.obd.blobDigest})`);
    toClose.push(() => layer.close());
    const b1 = client.stats.blob(r.obd.blobDigest);
    return { layer, info: layerInfo(r, layer, { bytes: b1.bytes - snap.bytes, requests: b1.requests - snap.requests, seconds: (performance.now() - t0) / 1000 }) };
  };
  const opened = await mapLimit(diskLayers, opts.parallel ?? 8, attachOne);
  const attachBytes = opened.reduce((s, o) => s + o.info.attach.bytes, 0);
  const attachRequests = opened.reduce((s, o) => s + o.info.attach.requests, 0);
  return finish({
    reference, source: 'registry',
    manifestDigest: resolved.manifest.digest, manifestMediaType: resolved.manifest.mediaType,
    ...(resolved.index ? { indexDigest: resolved.index.digest, indexMediaType: resolved.index.mediaType } : {}),
    configDigest: manifest.config.digest, configMediaType: manifest.config.mediaType,
    platform: platformOf(config, opts.platform ?? client.platform),
    diskSize: 0, writable: false,
    layers: opened.map((o) => o.info),
    accelerationLayers: acceleration.map((a) => ({ index: a.index, digest: a.obd.blobDigest, size: a.obd.blobSize })),
    imageBytes: diskLayers.reduce((s, r) => s + r.obd.blobSize, 0),
    attach: { seconds: 0, bytes: attachBytes + metadata.bytes, requests: attachRequests + metadata.requests,
      metadataBytes: metadata.bytes, metadataRequests: metadata.requests },
    cacheDir: opts.cache ? '(shared)' : cacheDir, refillUnit: cache.refillUnit,
  }, opened.map((o) => o.layer), opts, started, toClose, (opts.client ? 0 : 1) + (opts.cache ? 0 : 1), { client, cache });
}

async function openLayoutImage(ref: string, opts: RemoteImageOptions, started: number,
  toClose: Array<() => Promise<unknown>>): Promise<RemoteImage> {
  const { dir, tag } = parseOciLayoutRef(ref);
  const layout = new OciLayout(dir);
  const platform = opts.platform ?? (await import('../registry/client.ts')).hostPlatform();
  const m = await layout.resolve(tag, platform);
  const { disk: diskLayers, acceleration } = recogniseManifest(m.json, ref);
  const config = parseConfig(await layout.readBlob(m.json.config.digest, m.json.config.size), ref, m.json.config.digest);
  checkDiffIds(config, m.json, ref);
  const opened = await mapLimit(diskLayers, opts.parallel ?? 8, async (r) => {
    const t0 = performance.now();
    const src = await FileSource.open(layout.blobPath(r.obd.blobDigest));
    if (src.size !== r.obd.blobSize) {
      await src.close();
      throw new Error(`${layout.blobPath(r.obd.blobDigest)}: blob is ${src.size} bytes, the manifest says ${r.obd.blobSize}`);
    }
    const layer = await openLocalLayer(src, `${ref} layer ${r.index} (${r.obd.blobDigest})`);
    toClose.push(() => layer.close());
    return { layer, info: layerInfo(r, layer, { bytes: 0, requests: 0, seconds: (performance.now() - t0) / 1000 }) };
  });
  return finish({
    reference: ref, source: 'oci-layout', manifestDigest: m.digest, manifestMediaType: m.mediaType,
    configDigest: m.json.config.digest, configMediaType: m.json.config.mediaType, platform: platformOf(config, platform),
    diskSize: 0, writable: false, layers: opened.map((o) => o.info),
    accelerationLayers: acceleration.map((a) => ({ index: a.index, digest: a.obd.blobDigest, size: a.obd.blobSize })),
    imageBytes: diskLayers.reduce((s, r) => s + r.obd.blobSize, 0),
    attach: { seconds: 0, bytes: 0, requests: 0, metadataBytes: 0, metadataRequests: 0 },
  }, opened.map((o) => o.layer), opts, started, toClose, 0, {});
}

function parseConfig(bytes: Buffer, reference: string, digest: string): { rootfs?: { diff_ids?: unknown } } {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown;
    if (!json || typeof json !== 'object') throw new Error('not an object');
    return json as { rootfs?: { diff_ids?: unknown } };
  } catch (err) {
    throw new Error(`${reference}: image config ${digest} is not a JSON object: ${errorMessage(err)}`);
  }
}

/** overlaybd configs list each layer blob's digest as its diff_id (§7.9); a mismatch is only logged. */
function checkDiffIds(config: { rootfs?: { diff_ids?: unknown } }, manifest: ImageManifest, reference: string): void {
  const ids = config.rootfs?.diff_ids;
  if (!Array.isArray(ids)) return;
  if (ids.length !== manifest.layers.length) {
    log.warn({ reference, diffIds: ids.length, layers: manifest.layers.length }, 'config diff_ids and manifest layers differ in number');
  }
}

function layerInfo(r: Recognised, layer: RemoteLayer, attach: RemoteLayerInfo['attach']): RemoteLayerInfo {
  return {
    index: r.index, mediaType: r.d.mediaType, digest: r.d.digest, size: r.d.size,
    blobDigest: r.obd.blobDigest, blobSize: r.obd.blobSize, version: r.obd.version,
    ...(r.obd.fsType !== undefined ? { fsType: r.obd.fsType } : {}),
    wrappers: describeWrappers(layer), uuid: layer.uuid, parentUuid: layer.parentUuid,
    virtualSize: layer.virtualSize, segments: layer.index.count, attach,
  };
}

async function finish(info: RemoteImageInfo, layers: RemoteLayer[], opts: RemoteImageOptions, started: number,
  toClose: Array<() => Promise<unknown>>, ownedCount: number, shared: { client?: RegistryClient; cache?: BlobCache }): Promise<RemoteImage> {
  const upper = opts.writableDir ? await openUpper(opts.writableDir, layers.length) : undefined;
  if (upper) toClose.push(() => upper.close());
  const disk = await LayerStack.open({ lowers: layers, ...(upper ? { upper } : {}) });
  // The stack owns the layers and the upper from here; what is left to close is the client and
  // cache made for this image, which were pushed first.
  const owned = toClose.splice(0).slice(0, ownedCount);
  info.diskSize = disk.size;
  info.writable = disk.writable;
  info.attach.seconds = (performance.now() - started) / 1000;
  const stats = (): ImageStats => imageStats(info, layers, shared.client, shared.cache);

  const bg = { ...DEFAULT_BACKGROUND, ...opts.background };
  let downloads: Promise<BackgroundResult[]> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const startBackground = (): void => {
    if (downloads || closed) return;
    if (timer) clearTimeout(timer);
    downloads = (async () => {
      const results: BackgroundResult[] = [];
      // One layer after another, as overlaybd does: the bandwidth limit holds for the image.
      for (const l of layers) {
        if (closed || !l.cached || l.cached.complete) continue;
        results.push(await l.cached.startBackgroundDownload({ ...(bg.maxBytesPerSec ? { maxBytesPerSec: bg.maxBytesPerSec } : {}) }).done);
      }
      return results;
    })().catch((err) => {
      log.error({ err: errorMessage(err) }, 'background download failed');
      return [];
    });
  };
  if (bg.enable && shared.cache) {
    timer = setTimeout(startBackground, bg.delayMs ?? 0);
    timer.unref();
  }
  const interval = opts.statsIntervalMs ?? 60_000;
  const ticker = interval > 0 && log.isLevelEnabled('debug')
    ? setInterval(() => log.debug(stats(), 'image fetch and cache counters'), interval).unref() : undefined;

  return {
    disk, info, stats,
    downloaded: () => downloads ?? Promise.resolve([]),
    startBackground,
    close: async () => {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      if (ticker) clearInterval(ticker);
      if (opts.logStatsOnClose ?? true) logImageStats(stats());
      try {
        await disk.close();
      } finally {
        for (const fn of owned.reverse()) await fn();
      }
    },
  };
}
