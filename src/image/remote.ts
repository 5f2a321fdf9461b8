/**
 * Lazy attach of a dadi (overlaybd-format) image from any OCI registry: fetch the manifest
 * (choosing the platform from an index) and config, recognise every layer by its overlaybd
 * annotations, and open each layer's chain (registry Range reads under the persistent cache,
 * then the format decoders) reading only what locates its index. No layer data moves until the
 * disk is read; afterwards a throttled background download fills the cache and verifies each
 * blob's digest, after which the blob is served locally. `oci:DIR[:TAG]` layouts open the same
 * way from local blob files.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobCache, resolveCacheDir, type BackgroundResult } from '../io/cache.ts';
import type { Disk } from '../io/types.ts';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.ts';
import type { Credentials } from '../registry/credentials.ts';
import type { Platform } from '../registry/oci.ts';
import { formatReference, parseReference, referenceTarget } from '../registry/reference.ts';
import { Owner } from '../util/owner.ts';
import { log } from '../util/log.ts';
import { layerChainConfig, type ExtraFilters } from './chain/config.ts';
import { openImageChain, type UpperSpec } from './chain/image.ts';
import type { ChainLayer } from './chain/layer.ts';
import { fileUpstream, registryUpstream, type BlobRoute, type BlobRoutes } from './chain/upstreams.ts';
import { UpstreamHealth } from '../io/upstream-health.ts';
import { mirrorRoutes, type MirrorSpec } from './remote/mirrors.ts';
import { isOciLayoutRef, OciLayout, parseOciLayoutRef } from './oci-layout.ts';
import { BackgroundFill, type BackgroundOptions } from './remote/background.ts';
import { layerInfo, type RemoteImageInfo, type RemoteLayerInfo } from './remote/info.ts';
import { checkDiffIds, parseConfig, platformOf, recogniseManifest, type Recognised } from './remote/manifest.ts';
import { imageStats, logImageStats, type ImageStats } from './remote/stats.ts';

export { formatImageInfo, type ImageStats } from './remote/stats.ts';
export { isImageReference } from './remote/reference.ts';
export type { BackgroundOptions } from './remote/background.ts';
export type { RemoteImageInfo, RemoteLayerInfo } from './remote/info.ts';

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
  /** More stages in every layer's chain (see chain/config.ts). */
  filters?: ExtraFilters;
  /** Registry mirrors tried, in order, before the origin for blob reads. */
  mirrors?: readonly MirrorSpec[];
  /** Routes tried before the mirrors (a P2P agent's parent). */
  routes?: readonly BlobRoute[];
  /** Per-upstream timeout (ms) of routes and mirrors before the next is tried (default 5000). */
  upstreamTimeoutMs?: number;
  /** Check fetched bytes against each layer's chunk digest table when it has one (default true). */
  verify?: boolean;
}

export interface RemoteImage {
  disk: Disk;
  info: RemoteImageInfo;
  /** The layers of the disk, bottom first, with what their chains learned. */
  layers: readonly ChainLayer[];
  /** Fetch and cache counters now. */
  stats(): ImageStats;
  /** Resolves when every layer's background download has ended (never started: empty). */
  downloaded(): Promise<BackgroundResult[]>;
  /** Starts the background download now instead of after the delay. */
  startBackground(): void;
  close(): Promise<void>;
}

const DEFAULT_CAPACITY = 4 * 1024 ** 3;

/** The writable pair in `dir` (created, with the directory, when absent, as a layer stacked on the image). */
async function upperIn(dir: string): Promise<UpperSpec> {
  await mkdir(dir, { recursive: true });
  return { data: join(dir, 'writable_data'), index: join(dir, 'writable_index'), create: {} };
}

/** Attaches `ref` (a registry reference or `oci:DIR[:TAG]`) lazily; see the module comment. */
export async function openRemoteImage(ref: string, opts: RemoteImageOptions = {}): Promise<RemoteImage> {
  const started = performance.now();
  const owner = new Owner();
  try {
    return isOciLayoutRef(ref) ? await openLayoutImage(ref, opts, started, owner) : await openRegistryImage(ref, opts, started, owner);
  } catch (err) {
    await owner.close().catch((e: unknown) => log.warn({ err: String(e) }, 'close after failed attach'));
    throw err;
  }
}

interface Attached { info: RemoteImageInfo; client?: RegistryClient; cache?: BlobCache }

async function openRegistryImage(ref: string, opts: RemoteImageOptions, started: number, owner: Owner): Promise<RemoteImage> {
  const parsed = parseReference(ref);
  const reference = formatReference(parsed);
  const client = opts.client ?? owner.adopt(new RegistryClient({
    ...opts.clientOptions,
    ...(opts.insecure ? { insecure: true } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
  }), 'registry client');
  const before = { bytes: client.stats.bytes, requests: client.stats.requests };
  const resolved = await client.manifests.resolve(parsed, referenceTarget(parsed), opts.platform ?? client.platform);
  const manifest = resolved.manifest.json;
  const { disk: diskLayers, acceleration } = recogniseManifest(manifest, reference);
  const configBytes = await client.blobs.get(parsed, manifest.config.digest, manifest.config.size);
  const config = parseConfig(configBytes, reference, manifest.config.digest);
  checkDiffIds(config, manifest, reference);

  const cacheDir = resolveCacheDir(opts.cacheDir);
  const cache = opts.cache ?? owner.adopt(await BlobCache.open({
    dir: cacheDir, capacityBytes: opts.cacheCapacity ?? DEFAULT_CAPACITY,
    ...(opts.refillUnit ? { refillUnit: opts.refillUnit } : {}),
  }), 'block cache');
  const metadata = { bytes: client.stats.bytes - before.bytes, requests: client.stats.requests - before.requests };

  const routes = blobRoutes(opts, owner);
  const infos: RemoteLayerInfo[] = new Array(diskLayers.length);
  const chain = await openImageChain({
    lowers: diskLayers.map((r) => {
      const blob = { digest: r.obd.blobDigest, size: r.obd.blobSize, ...(r.obd.verifyTable ? { table: r.obd.verifyTable } : {}) };
      return { chain: { name: `${reference} layer ${r.index} (${blob.digest})`, blob, upstream: registryUpstream(client, parsed, blob, routes) } };
    }),
    ...(opts.writableDir ? { upper: await upperIn(opts.writableDir) } : {}),
    config: layerChainConfig({ cache, ...(opts.filters ? { extra: opts.filters } : {}), ...(opts.verify === false ? { verify: false } : {}) }),
    parallel: opts.parallel ?? 8,
    measure: async (i, open) => {
      const r = diskLayers[i]!;
      const t0 = performance.now();
      const b0 = { ...client.stats.blob(r.obd.blobDigest) };
      const layer = await open();
      const b1 = client.stats.blob(r.obd.blobDigest);
      infos[i] = layerInfo(r, layer, { bytes: b1.bytes - b0.bytes, requests: b1.requests - b0.requests, seconds: (performance.now() - t0) / 1000 });
      return layer;
    },
  }, owner);
  const attachBytes = infos.reduce((s, l) => s + l.attach.bytes, 0);
  const attachRequests = infos.reduce((s, l) => s + l.attach.requests, 0);
  const info: RemoteImageInfo = {
    reference, source: 'registry',
    manifestDigest: resolved.manifest.digest, manifestMediaType: resolved.manifest.mediaType,
    ...(resolved.index ? { indexDigest: resolved.index.digest, indexMediaType: resolved.index.mediaType } : {}),
    configDigest: manifest.config.digest, configMediaType: manifest.config.mediaType,
    platform: platformOf(config, opts.platform ?? client.platform),
    diskSize: 0, writable: false, layers: infos,
    accelerationLayers: accelerationInfo(acceleration),
    imageBytes: diskLayers.reduce((s, r) => s + r.obd.blobSize, 0),
    attach: { seconds: 0, bytes: attachBytes + metadata.bytes, requests: attachRequests + metadata.requests,
      metadataBytes: metadata.bytes, metadataRequests: metadata.requests },
    cacheDir: opts.cache ? '(shared)' : cacheDir, refillUnit: cache.refillUnit,
  };
  return finish({ info, client, cache }, chain.disk, chain.layers, opts, started, owner);
}

/** The routes before the origin (P2P, then mirrors), sharing one health record; none: undefined. */
function blobRoutes(opts: RemoteImageOptions, owner: Owner): BlobRoutes | undefined {
  const mirrors = mirrorRoutes(opts.mirrors ?? [], {
    ...opts.clientOptions, timeoutMs: opts.upstreamTimeoutMs ?? 5000,
    ...(opts.insecure ? { insecure: true } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
  for (const m of mirrors) owner.adopt(m, m.name);
  const routes = [...(opts.routes ?? []), ...mirrors];
  if (routes.length === 0) return undefined;
  return {
    routes, health: new UpstreamHealth(),
    ...(opts.upstreamTimeoutMs !== undefined ? { timeoutMs: opts.upstreamTimeoutMs } : {}),
    onFallback: (e) => log.warn(e, 'upstream failed, reading from the next one'),
  };
}

async function openLayoutImage(ref: string, opts: RemoteImageOptions, started: number, owner: Owner): Promise<RemoteImage> {
  const { dir, tag } = parseOciLayoutRef(ref);
  const layout = new OciLayout(dir);
  const platform = opts.platform ?? (await import('../registry/client.ts')).hostPlatform();
  const m = await layout.resolve(tag, platform);
  const { disk: diskLayers, acceleration } = recogniseManifest(m.json, ref);
  const config = parseConfig(await layout.readBlob(m.json.config.digest, m.json.config.size), ref, m.json.config.digest);
  checkDiffIds(config, m.json, ref);
  const infos: RemoteLayerInfo[] = new Array(diskLayers.length);
  const chain = await openImageChain({
    lowers: diskLayers.map((r) => {
      const blob = { digest: r.obd.blobDigest, size: r.obd.blobSize, ...(r.obd.verifyTable ? { table: r.obd.verifyTable } : {}) };
      return { chain: { name: `${ref} layer ${r.index} (${blob.digest})`, blob, upstream: fileUpstream(layout.blobPath(blob.digest)) } };
    }),
    ...(opts.writableDir ? { upper: await upperIn(opts.writableDir) } : {}),
    config: layerChainConfig({ ...(opts.filters ? { extra: opts.filters } : {}), ...(opts.verify === false ? { verify: false } : {}) }),
    parallel: opts.parallel ?? 8,
    measure: async (i, open) => {
      const t0 = performance.now();
      const layer = await open();
      infos[i] = layerInfo(diskLayers[i]!, layer, { bytes: 0, requests: 0, seconds: (performance.now() - t0) / 1000 });
      return layer;
    },
  }, owner);
  const info: RemoteImageInfo = {
    reference: ref, source: 'oci-layout', manifestDigest: m.digest, manifestMediaType: m.mediaType,
    configDigest: m.json.config.digest, configMediaType: m.json.config.mediaType, platform: platformOf(config, platform),
    diskSize: 0, writable: false, layers: infos,
    accelerationLayers: accelerationInfo(acceleration),
    imageBytes: diskLayers.reduce((s, r) => s + r.obd.blobSize, 0),
    attach: { seconds: 0, bytes: 0, requests: 0, metadataBytes: 0, metadataRequests: 0 },
  };
  return finish({ info }, chain.disk, chain.layers, opts, started, owner);
}

function accelerationInfo(layers: Recognised[]): RemoteImageInfo['accelerationLayers'] {
  return layers.map((a) => ({ index: a.index, digest: a.obd.blobDigest, size: a.obd.blobSize }));
}

function finish(attached: Attached, disk: Disk, layers: ChainLayer[], opts: RemoteImageOptions, started: number, owner: Owner): RemoteImage {
  const { info } = attached;
  info.diskSize = disk.size;
  info.writable = disk.writable;
  info.attach.seconds = (performance.now() - started) / 1000;
  const stats = (): ImageStats => imageStats(info, layers, attached.client, attached.cache);
  const background = new BackgroundFill(layers, opts.background);
  const interval = opts.statsIntervalMs ?? 60_000;
  const ticker = interval > 0 && log.isLevelEnabled('debug')
    ? setInterval(() => log.debug(stats(), 'image fetch and cache counters'), interval).unref() : undefined;
  // Closed first (adopted last): stop the counters and the downloads, then the stack, cache, client.
  owner.defer('background download', async () => {
    background.stop();
    if (ticker) clearInterval(ticker);
    if (opts.logStatsOnClose ?? true) logImageStats(stats());
  });
  let closing: Promise<void> | undefined;
  return {
    disk, info, layers, stats,
    downloaded: () => background.done(),
    startBackground: () => background.start(),
    close: () => (closing ??= owner.close()),
  };
}
