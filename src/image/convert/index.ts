/**
 * `dadi convert`: an ordinary OCI/Docker image into a native overlaybd image (formats.md §7.7 A,
 * §7.9). Layers are converted bottom-up, each on top of the converted ones below; a layer whose
 * chainID was converted before with the same settings is reused from the destination (HEAD) or
 * another repository of the same registry (cross-repo mount). Then the config (diff_ids = the new
 * blob digests) and a manifest of the source's schema family are pushed.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTableRef } from '../../format/tar/digest-table.ts';
import { RegistryClient } from '../../registry/client.ts';
import { sha256Digest } from '../../registry/digest.ts';
import { MediaType } from '../../registry/media-types.ts';
import type { Descriptor, ImageManifest, Platform } from '../../registry/oci.ts';
import { Annotation } from '../annotations.ts';
import { chainIdToUuid, chainIds } from '../chain-id.ts';
import { ApplyThread } from './apply-thread.ts';
import { BackgroundCommits } from './background-commits.ts';
import { applyLayerStage, commitLayer, type ConvertLayerOptions } from './layer.ts';
import { MKFS_OPTIONS } from './mkfs.ts';
import { ReuseStore, type ConvertSettings } from './reuse.ts';
import { USERSPACE_FS_ID } from './userspace-apply.ts';
import { openSource, openTarget, type ImageTarget } from './store.ts';

export const OVERLAYBD_VERSION = '0.1.0';
export const ANNOTATION = {
  digest: 'containerd.io/snapshot/overlaybd/blob-digest',
  size: 'containerd.io/snapshot/overlaybd/blob-size',
  version: 'containerd.io/snapshot/overlaybd/version',
  verifyTable: Annotation.verifyTable,
} as const;

export type LayerStep = 'reuse' | 'fetch-lower' | 'mount' | 'apply' | 'unmount' | 'commit' | 'push';

export type ConvertEvent =
  | { step: 'resolve'; src: string; manifest: string; layers: number; bytes: number }
  | { step: LayerStep; layer: number; digest: string; size: number }
  | { step: 'progress'; layer: number; bytes: number; size: number }
  | { step: 'layer-done'; layer: number; digest: string; size: number; blobDigest: string; blobSize: number; how: LayerOutcome; seconds: number; pushed?: 'uploaded' | 'existing' }
  | { step: 'manifest'; digest: string; dst: string };

export type LayerOutcome = 'converted' | 'reused' | 'mounted';

export interface ConvertOptions {
  src: string;
  dst: string;
  /** ZFile algorithm of the layers, or 'none' for plain (uncompressed) overlaybd layers. */
  compress?: 'lz4' | 'zstd' | 'none';
  blockSize?: number;
  vsize?: number;
  insecure?: boolean;
  cacheDir: string;
  platform?: Platform;
  /** Apply layers through a kernel mount (root, FUSE, loop; not reproducible) instead of the userspace ext4 writer. */
  kernel?: boolean;
  /** Where per-layer scratch directories go (default: the OS temp dir). */
  tmpDir?: string;
  onEvent?(e: ConvertEvent): void;
}

export interface ConvertSummary {
  src: string;
  dst: string;
  manifestDigest: string;
  layers: number;
  reusedLayers: number;
  /** Source layer bytes read (compressed, as stored), for the layers actually converted. */
  bytesIn: number;
  /** Converted blob bytes of every layer of the result. */
  bytesOut: number;
  seconds: number;
  layerDigests: string[];
}

const DEFAULT_VSIZE = 64 * 2 ** 30;

function layerMediaType(manifestType: string): string {
  return manifestType === MediaType.dockerManifest ? MediaType.dockerLayer : MediaType.ociLayer;
}

/** A converted layer; `table` is its verify-table annotation value. */
interface Done { digest: string; size: number; table?: string; path?: string }

async function tryReuse(target: ImageTarget, rec: { digest: string; size: number; locations: string[] } | undefined): Promise<LayerOutcome | undefined> {
  if (!rec) return undefined;
  if (await target.hasBlob(rec.digest, rec.size)) return 'reused';
  for (const from of [...rec.locations].reverse()) {
    if (await target.linkBlob(from, rec.digest, rec.size).catch(() => false)) return 'mounted';
  }
  return undefined;
}

async function mountedUnder(dir: string): Promise<boolean> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  // Mount points are octal-escaped in /proc/mounts; ours never contain such characters.
  return text.split('\n').some((line) => (line.split(' ')[1] ?? '').startsWith(`${dir}/`));
}

export async function convertImage(opts: ConvertOptions): Promise<ConvertSummary> {
  const started = performance.now();
  const emit = opts.onEvent ?? (() => {});
  const settings: ConvertSettings = {
    compress: opts.compress ?? 'lz4', blockSize: opts.blockSize ?? 4096, vsize: opts.vsize ?? DEFAULT_VSIZE,
    mkfs: opts.kernel ? MKFS_OPTIONS : USERSPACE_FS_ID,
  };
  if (settings.vsize % 4096 !== 0 || settings.vsize <= 0) throw new Error(`--vsize ${settings.vsize} must be a positive multiple of 4096 bytes`);
  const client = new RegistryClient({ insecure: opts.insecure ?? false, ...(opts.platform ? { platform: opts.platform } : {}) });
  const work = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'dadi-convert-'));
  let applier: ApplyThread | undefined;
  const commits = new BackgroundCommits();
  try {
    const source = openSource(opts.src, { client, ...(opts.platform ? { platform: opts.platform } : {}) });
    const target = openTarget(opts.dst, { client });
    const manifest = await source.manifest();
    const configBytes = await source.readBlob(manifest.json.config);
    let config: { rootfs?: { type?: string; diff_ids?: unknown } } & Record<string, unknown>;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as typeof config;
    } catch {
      throw new Error(`${opts.src}: image config ${manifest.json.config.digest} is not valid JSON`);
    }
    const diffIds = config.rootfs?.diff_ids;
    const layers = manifest.json.layers;
    if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string')) {
      throw new Error(`${opts.src}: config rootfs.diff_ids must list one diffID per manifest layer (${layers.length})`);
    }
    const chains = chainIds(diffIds as string[]);
    emit({ step: 'resolve', src: opts.src, manifest: manifest.digest, layers: layers.length, bytes: layers.reduce((n, l) => n + l.size, 0) });

    const reuse = new ReuseStore(opts.cacheDir);
    const done: Done[] = [];
    let bytesIn = 0;
    let reused = 0;
    for (const [i, layer] of layers.entries()) {
      const t0 = performance.now();
      const ev = { layer: i, digest: layer.digest, size: layer.size };
      const rec = await reuse.get(chains[i]!, settings);
      const outcome = await tryReuse(target, rec);
      if (outcome && rec) {
        emit({ step: 'reuse', ...ev });
        done.push({ digest: rec.digest, size: rec.size, ...(rec.table !== undefined ? { table: rec.table } : {}) });
        await reuse.put(chains[i]!, settings, rec.digest, rec.size, target.location, rec.table);
        reused++;
        emit({ step: 'layer-done', ...ev, blobDigest: rec.digest, blobSize: rec.size, how: outcome, seconds: (performance.now() - t0) / 1000 });
        continue;
      }
      // The lowers must be local files; a reused one is fetched back from the destination.
      const lowers: string[] = [];
      for (const [j, d] of done.entries()) {
        if (!d.path) {
          emit({ step: 'fetch-lower', layer: j, digest: d.digest, size: d.size });
          d.path = join(work, `lower-${j}.commit`);
          await target.fetchBlob(d.digest, d.size, d.path);
        }
        lowers.push(d.path);
      }
      // Started before the first mount, so its start-up overlaps with serving and mounting.
      if (opts.kernel) applier ??= new ApplyThread();
      // Names the layer: an entry name alone does not say which of the image's tars held it.
      const named = (err: unknown): never => {
        if (err instanceof Error) err.message = `layer ${i} (${layer.digest}): ${err.message}`;
        throw err;
      };
      const layerOpts: ConvertLayerOptions = {
        index: i, name: layer.digest, lowers, vsize: settings.vsize, uuid: chainIdToUuid(chains[i]!),
        ...(i > 0 ? { parentUuid: chainIdToUuid(chains[i - 1]!) } : {}),
        compress: settings.compress, blockSize: settings.blockSize, workDir: join(work, `l${i}`),
        kernel: opts.kernel ?? false, ...(applier ? { applier } : {}), open: () => source.openBlob(layer),
        onApplyProgress: (bytes) => emit({ step: 'progress', layer: i, bytes, size: layer.size }),
        onStep: (step) => emit({ step, ...ev }),
      };
      commits.check();
      const applied = await applyLayerStage(layerOpts).catch(named);
      const entry: Done = { digest: '', size: 0, path: applied.lowerSpec };
      done.push(entry);
      commits.add(async () => {
        const converted = await commitLayer(layerOpts, applied.rw, applied.apply).catch(named);
        bytesIn += layer.size;
        emit({ step: 'push', ...ev });
        // The digest and table were taken from the finished file itself (commitLayer).
        const pushed = await target.putBlobFile(converted.path, converted.digest, converted.size, { hashedByCaller: true });
        const table = formatTableRef(converted.table);
        await reuse.put(chains[i]!, settings, converted.digest, converted.size, target.location, table);
        Object.assign(entry, { digest: converted.digest, size: converted.size, table });
        emit({ step: 'layer-done', ...ev, blobDigest: converted.digest, blobSize: converted.size, how: 'converted', seconds: (performance.now() - t0) / 1000, pushed });
      });
    }
    await commits.drain();

    // The blob is an uncompressed tar, so its digest is also its diffID (§7.7 A step 6).
    const newConfig = { ...config, rootfs: { ...config.rootfs, type: config.rootfs?.type ?? 'layers', diff_ids: done.map((d) => d.digest) } };
    const newConfigBytes = Buffer.from(JSON.stringify(newConfig));
    const configDigest = await target.putBlobBytes(newConfigBytes);
    const layerType = layerMediaType(manifest.mediaType);
    const out: ImageManifest = {
      schemaVersion: 2,
      mediaType: manifest.mediaType,
      config: { mediaType: manifest.json.config.mediaType, digest: configDigest, size: newConfigBytes.length },
      layers: done.map((d): Descriptor => ({ mediaType: layerType, digest: d.digest, size: d.size,
        annotations: { [ANNOTATION.digest]: d.digest, [ANNOTATION.size]: String(d.size), [ANNOTATION.version]: OVERLAYBD_VERSION,
          ...(d.table !== undefined ? { [ANNOTATION.verifyTable]: d.table } : {}) } })),
      ...(manifest.json.annotations ? { annotations: manifest.json.annotations } : {}),
    };
    const manifestBytes = Buffer.from(JSON.stringify(out));
    const manifestDigest = sha256Digest(manifestBytes);
    await target.putManifest(manifestBytes, manifest.mediaType, manifestDigest);
    emit({ step: 'manifest', digest: manifestDigest, dst: opts.dst });
    return {
      src: opts.src, dst: opts.dst, manifestDigest, layers: layers.length, reusedLayers: reused, bytesIn,
      bytesOut: done.reduce((n, d) => n + d.size, 0), seconds: (performance.now() - started) / 1000, layerDigests: done.map((d) => d.digest),
    };
  } finally {
    await commits.settle();
    await applier?.close();
    // Never recurse into a file system a failed teardown left mounted: rm would empty it.
    if (!(await mountedUnder(work))) await rm(work, { recursive: true, force: true }).catch(() => undefined);
    await client.close();
  }
}
