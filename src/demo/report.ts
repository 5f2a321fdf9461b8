/** The human-readable `dadi demo` log: one line per step with the elapsed time, details indented. */
import { formatSize } from '../util/size.ts';
import type { DemoEvent } from './events.ts';

function ms(seconds: number): string {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

function pct(part: number, whole: number): string {
  return whole > 0 ? `${((part / whole) * 100).toFixed(2)}%` : '-';
}

function requests(n: number): string {
  return `${n} request${n === 1 ? '' : 's'}`;
}

function short(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** The lines for one event (no trailing newline); `elapsed` is seconds since the demo started. */
export function formatEvent(e: DemoEvent, elapsed: number): string {
  const head = (name: string, text: string): string => `[${elapsed.toFixed(1).padStart(5)} s] ${name.padEnd(9)} ${text}`;
  const sub = (text: string): string => `${' '.repeat(20)}${text}`;
  switch (e.step) {
    case 'registry':
      return head('registry', `embedded registry on ${e.url}, storage in ${e.root} (${ms(e.seconds)})`);
    case 'build':
      return [head('build', `OCI image of ${e.layers.length} gzip layers (${formatSize(e.bytes)}) pushed as ${e.reference} (${ms(e.seconds)})`),
        ...e.layers.map((l, i) => sub(`layer ${i}: ${l.title}; ${l.entries} entries, ${formatSize(l.tarBytes)} tar, ${formatSize(l.gzipBytes)} gzip`))].join('\n');
    case 'convert-layer':
      return head('convert', `layer ${e.layer} ${e.how}: ${formatSize(e.sourceBytes)} gzip -> ${formatSize(e.blobBytes)} overlaybd blob ${short(e.blobDigest)} (${ms(e.seconds)})`);
    case 'convert':
      return head('convert', `${e.layers} layers into ${e.reference}: ${formatSize(e.bytesIn)} in, ${formatSize(e.bytesOut)} out (${ms(e.seconds)})`);
    case 'attach':
      return [head('attach', `attached ${e.reference} lazily in ${ms(e.seconds)}: ${e.layers} layers, a ${formatSize(e.diskSize)} disk`),
        sub(`fetched ${formatSize(e.fetchedBytes)} in ${requests(e.fetchedRequests)} (manifest, config, layer headers and indexes): ` +
          `layer bytes ${formatSize(e.layerBytes)} = ${pct(e.layerBytes, e.imageBytes)} of the ${formatSize(e.imageBytes)} image`)].join('\n');
    case 'mount':
      return head('mount', `${e.fsType} mounted read-only on ${e.mountPoint} (${e.device} via ${e.method}, NBD served in-process) (${ms(e.seconds)})`);
    case 'list':
      return [head('list', `${e.entries} entries; / holds ${e.root.join(' ')}${e.via === 'userspace' ? ' (userspace ext4 reader, no mount)' : ''} (${ms(e.seconds)})`),
        sub(e.matches ? 'the tree (paths, types, modes, sizes, link targets, hard link, whiteout) matches the generated image'
          : 'the tree DIFFERS from the generated image (see the problems below)')].join('\n');
    case 'read':
      return [head('read', `${e.path}: ${JSON.stringify(e.firstLine)}`),
        sub(`${e.bytes} bytes, ${e.matches ? 'identical to' : 'DIFFERENT from'} the generated file (${ms(e.seconds)})`)].join('\n');
    case 'fetched':
      return [head('fetched', `${formatSize(e.bytes)} from the registry in ${requests(e.requests)} = ${pct(e.bytes, e.imageBytes)} of the ` +
        `${formatSize(e.imageBytes)} image; block cache ${e.cacheHits} hits, ${e.cacheMisses} misses`),
        sub(`of which ${formatSize(e.afterAttach.bytes)} in ${requests(e.afterAttach.requests)} after the attach`),
        ...e.layers.map((l) => sub(`layer ${l.layer}: ${formatSize(l.fetchedBytes)} of its ${formatSize(l.blobBytes)} blob (${pct(l.fetchedBytes, l.blobBytes)}) in ${requests(l.requests)}`))].join('\n');
    case 'skipped':
      return [head('skipped', `${e.what}: ${e.reason}`), ...(e.missing ?? []).map((m) => sub(`missing: ${m}`))].join('\n');
    case 'cleanup':
      return [head('cleanup', `${e.undone.length > 0 ? e.undone.join(', ') : 'nothing to undo'} (${ms(e.seconds)})`),
        ...(e.kept ? [sub(`kept ${e.kept} (--keep): registry storage and caches; remove it when done`)] : [])].join('\n');
    case 'done':
      return [head('done', `${e.ok ? 'every step that ran passed' : 'FAILED'} in ${ms(e.seconds)}` +
        `${e.skipped.length > 0 ? `; skipped ${e.skipped.map((s) => s.split(':')[0]).join(', ')}` : ''}`),
        ...e.problems.map((p) => sub(`problem: ${p}`))].join('\n');
  }
}
