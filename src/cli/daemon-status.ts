/**
 * `dadi image info --daemon`: the images a running snapshotter has attached, as text. Per image:
 * device and containers, layers with their cache and verification counters, and the prefetch
 * (trace replay, file list or whole layers): bytes prefetched, demand reads that hit prefetched
 * data, demand reads that still missed, and the replay's wall time.
 */
import type { DaemonStatus, ImageStatus } from '../daemon/status-client.ts';
import { formatSize } from '../util/size.ts';

/** The attached images `ref` names: an exact reference, else those whose reference contains it. */
export function selectImages(status: DaemonStatus, ref: string | undefined): ImageStatus[] {
  if (!ref) return status.images;
  const exact = status.images.filter((i) => i.image === ref);
  return exact.length > 0 ? exact : status.images.filter((i) => i.image.includes(ref));
}

const short = (digest: string | undefined): string => (digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '(local file)');
const pct = (n: number, of: number): string => (of > 0 ? `${((100 * n) / of).toFixed(0)}%` : '-');

export function formatDaemonImage(img: ImageStatus): string {
  const out: string[] = [];
  out.push(`image:       ${img.image}`);
  out.push(`snapshot:    ${img.snapshot} (${img.kind}, ${img.state})`);
  if (img.device) out.push(`device:      ${img.device}${img.mountPoint ? ` mounted at ${img.mountPoint}` : ''}`);
  out.push(`containers:  ${img.containers.length > 0 ? img.containers.join(', ') : '(none)'}`);
  if (img.fetched) out.push(`fetched:     ${formatSize(img.fetched.bytes)} in ${img.fetched.requests} registry requests`);
  if (img.demand) out.push(`demand:      ${img.demand.hits} cache hits, ${img.demand.misses} misses (${img.demand.missesAfterMount} after the mount)`);
  if (img.layers.length > 0) {
    out.push(`layers:      ${img.layers.length} (bottom first)`);
    for (const [i, l] of img.layers.entries()) {
      const c = l.cache;
      const cache = c ? `cached ${formatSize(c.presentBytes)}/${formatSize(l.blobSize ?? 0)}${c.complete ? ' (complete)' : ''}, ${c.hits} hits, ${c.misses} misses, ` +
        `${formatSize(c.bytesFromUpstream)} from upstream (${c.traceRequests} prefetch requests)` : 'not cached';
      const verify = l.verify ? `; verified ${l.verify.chunksVerified} chunks, ${l.verify.mismatches} mismatches, ${l.verify.recovered} recovered, ${l.verify.failures} failures` : '';
      out.push(`  ${i}  ${short(l.digest)}  ${cache}${verify}`);
    }
  }
  const p = img.prefetch;
  if (p) {
    out.push(`prefetch:    ${p.kind} (${p.source}), ${p.running ? 'running' : 'done'}`);
    out.push(`  prefetched:      ${formatSize(p.issuedBytes)} of ${formatSize(p.prefetchBytes)} planned, ${p.issued}/${p.requests} requests`);
    out.push(`  demand reads:    ${p.demandReads}, ${p.demandHitsPrefetched} hit prefetched data (${pct(p.demandHitsPrefetched, p.demandReads)})`);
    out.push(`  demand misses:   ${p.cacheMisses} waited on the registry after the prefetch started`);
    out.push(`  replay wall:     ${(p.wallMs / 1000).toFixed(2)} s${p.running ? ' so far' : ''}`);
  } else if (img.kind === 'image') {
    out.push('prefetch:    none (no trace, no file list, no whole-layer prefetch)');
  }
  return `${out.join('\n')}\n`;
}
