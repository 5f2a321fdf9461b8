/**
 * What an attached remote image has cost so far: bytes and requests fetched from the registry
 * per blob (the client's own counters), cache hits, misses and miss latency per blob (the cache's
 * counters). `dadi image info` prints it; a serving process logs it at close.
 */
import type { BlobCache, BlobStatsSnapshot } from '../../io/cache.ts';
import type { RegistryClient } from '../../registry/client.ts';
import type { VerifyCounters } from '../../io/verify.ts';
import { log } from '../../util/log.ts';
import type { ChainLayer } from '../chain/layer.ts';
import type { RemoteImageInfo } from './info.ts';

export interface LayerStats {
  index: number;
  blobDigest: string;
  /** From the registry, since the client was made (attach included). */
  fetched: { bytes: number; requests: number };
  cache?: BlobStatsSnapshot;
  /** The whole blob is cached and its digest verified: reads no longer touch the registry. */
  complete: boolean;
  corruptRefetches: number;
  /** Chunk verification counters, when the layer has a digest table. */
  verify?: VerifyCounters;
}

export interface ImageStats {
  reference: string;
  fetched: { bytes: number; requests: number };
  layers: LayerStats[];
  cache?: { usedBytes: number; capacityBytes: number; evictions: number; hits: number; misses: number;
    missLatencyP50: number; missLatencyP99: number };
}

export function imageStats(info: RemoteImageInfo, layers: readonly ChainLayer[], client: RegistryClient | undefined,
  cache: BlobCache | undefined): ImageStats {
  const per: LayerStats[] = layers.map((l, i) => {
    const li = info.layers[i]!;
    const snap = cache?.blobStats(li.blobDigest);
    return {
      index: li.index,
      blobDigest: li.blobDigest,
      fetched: client ? { ...client.stats.blob(li.blobDigest) } : { bytes: 0, requests: 0 },
      ...(snap ? { cache: snap } : {}),
      complete: l.cached?.complete ?? true,
      corruptRefetches: l.corruptRefetches,
      ...(l.verify ? { verify: { ...l.verify } } : {}),
    };
  });
  const out: ImageStats = {
    reference: info.reference,
    fetched: client ? { bytes: client.stats.bytes, requests: client.stats.requests } : { bytes: 0, requests: 0 },
    layers: per,
  };
  if (cache) {
    const snaps = per.flatMap((p) => (p.cache ? [p.cache] : []));
    out.cache = {
      usedBytes: cache.usedBytes, capacityBytes: cache.capacityBytes, evictions: cache.evictions,
      hits: snaps.reduce((s, x) => s + x.hits, 0), misses: snaps.reduce((s, x) => s + x.misses, 0),
      // The slowest layer's quantiles: a conservative image-wide figure without merging histograms.
      missLatencyP50: Math.max(0, ...snaps.map((x) => x.missLatencyP50)),
      missLatencyP99: Math.max(0, ...snaps.map((x) => x.missLatencyP99)),
    };
  }
  return out;
}

export function logImageStats(stats: ImageStats): void {
  log.info(stats, 'remote image: registry fetches and cache counters');
}

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]} (${n} B)`;
}

function ms(seconds: number): string {
  return `${(seconds * 1000).toFixed(1)} ms`;
}

/** The human-readable `dadi image info` report. */
export function formatImageInfo(info: RemoteImageInfo, stats: ImageStats): string {
  const lines: string[] = [];
  lines.push(`image:      ${info.reference}`);
  if (info.indexDigest) lines.push(`index:      ${info.indexDigest} (${info.indexMediaType})`);
  lines.push(`manifest:   ${info.manifestDigest} (${info.manifestMediaType})`);
  lines.push(`config:     ${info.configDigest} (${info.configMediaType})`);
  const p = info.platform;
  lines.push(`platform:   ${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`);
  lines.push(`disk size:  ${size(info.diskSize)}`);
  lines.push(`image size: ${size(info.imageBytes)} in ${info.layers.length} layer(s)`);
  for (const l of info.layers) {
    lines.push(`layer ${l.index}: ${l.blobDigest}`);
    lines.push(`  media type ${l.mediaType}, ${size(l.blobSize)}, overlaybd ${l.version}${l.fsType ? `, fs ${l.fsType}` : ''}`);
    lines.push(`  wrappers   ${l.wrappers.length ? l.wrappers.join(' > ') : '(plain LSMT)'}${l.verified ? '; fetches checked against its chunk digest table' : ''}`);
    lines.push(`  uuid       ${l.uuid || '-'} parent ${l.parentUuid || '-'}`);
    lines.push(`  virtual    ${size(l.virtualSize)}, ${l.segments} segment(s)`);
    lines.push(`  attach     ${size(l.attach.bytes)} in ${l.attach.requests} request(s), ${ms(l.attach.seconds)}`);
  }
  for (const a of info.accelerationLayers) lines.push(`layer ${a.index}: ${a.digest} acceleration (trace) layer, not part of the disk`);
  const a = info.attach;
  const pct = info.imageBytes > 0 ? ((a.bytes - a.metadataBytes) / info.imageBytes) * 100 : 0;
  lines.push(`attach:     ${ms(a.seconds)}, ${size(a.bytes)} in ${a.requests} request(s) ` +
    `(manifest+config ${size(a.metadataBytes)}; layer bytes ${pct.toFixed(3)}% of the image)`);
  if (stats.cache) {
    const c = stats.cache;
    lines.push(`cache:      ${info.cacheDir ?? '-'} refill unit ${info.refillUnit ?? '-'}; ${size(c.usedBytes)} used of ${size(c.capacityBytes)}; ` +
      `${c.hits} hit(s), ${c.misses} miss(es), miss latency p50 ${ms(c.missLatencyP50)} p99 ${ms(c.missLatencyP99)}`);
  }
  return `${lines.join('\n')}\n`;
}
