/**
 * `dadi demo`: the main job end to end on the embedded defaults. Starts the embedded registry
 * in a temporary directory, pushes an OCI image built from generated content, converts it, attaches
 * the result lazily, mounts it (when this host allows) and checks what it reads against what it
 * generated, then reports how little of the image was fetched. Steps that need privileges this
 * host lacks are skipped with the reason; everything started is undone on success, failure or
 * interruption, in reverse order.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertImage } from '../image/convert/index.ts';
import { openRemoteImage, type RemoteImage } from '../image/remote.ts';
import { startRegistryServer } from '../registry/server/server.ts';
import { generateDemoContent, type DemoContent } from './content.ts';
import type { DemoEvent } from './events.ts';
import { inspectImage, inspectMount, type Inspection } from './inspect.ts';
import { Ext4Reader } from '../fs/ext4/reader.ts';
import { mountDisk, undoneBy } from '../host/mounter.ts';
import { checkPrerequisites, type Prerequisites } from './prerequisites.ts';
import { pushOciImage } from './push.ts';

export interface DemoOptions {
  /** Keep the temporary directory (registry storage, caches) and report its path. */
  keep?: boolean;
  /** Mount the image when the host allows (default true). */
  mount?: boolean;
  /** Aborting stops at the next step boundary, then cleans up. */
  signal?: AbortSignal;
  onEvent?(e: DemoEvent): void;
  /** Parent of the temporary directory (default the OS temp dir). */
  tmpDir?: string;
  /** Total size of the binary-like files of the base layer, bytes (default 16 MiB). */
  binaryBytes?: number;
  /** Virtual size of the converted image's disk (default 1 GiB: quick to mkfs, ample for the demo). */
  vsize?: number;
  /** For tests: what the host lacks, instead of checking. */
  prerequisites?: Prerequisites;
}

export interface DemoResult {
  ok: boolean;
  workDir: string;
  kept: boolean;
  skipped: string[];
  problems: string[];
}

export class DemoInterrupted extends Error {
  override readonly name = 'DemoInterrupted';
  constructor(detail = '') {
    super(`interrupted; everything the demo started has been cleaned up${detail}`);
  }
}

export const DEFAULT_BINARY_BYTES = 16 << 20;

type Cleanup = { what: string; undo: () => Promise<string[] | void> };

async function mountedUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return text.split('\n').map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

const since = (t0: number): number => (performance.now() - t0) / 1000;

export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const started = performance.now();
  const emit = opts.onEvent ?? ((): void => {});
  const checkAbort = (): void => {
    if (opts.signal?.aborted) throw new DemoInterrupted();
  };
  const work = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'dadi-demo-'));
  const cleanups: Cleanup[] = [];
  const skipped: string[] = [];
  const problems: string[] = [];
  const skip = (what: 'mount', reason: string, missing?: string[]): void => {
    skipped.push(`${what}: ${reason}${missing ? ` (missing: ${missing.join(', ')})` : ''}`);
    emit({ step: 'skipped', what, reason, ...(missing ? { missing } : {}) });
  };
  let failure: Error | undefined;
  try {
    checkAbort();
    let t0 = performance.now();
    const registry = await startRegistryServer({ root: join(work, 'registry'), host: '127.0.0.1', port: 0 });
    cleanups.push({ what: 'stopped the registry', undo: () => registry.stop() });
    emit({ step: 'registry', url: registry.url, root: join(work, 'registry'), seconds: since(t0) });

    checkAbort();
    t0 = performance.now();
    const content: DemoContent = await generateDemoContent(opts.binaryBytes ?? DEFAULT_BINARY_BYTES);
    const src = `${registry.hostPort}/demo/app:1`;
    const pushed = await pushOciImage(src, content.layers);
    emit({ step: 'build', reference: src, manifest: pushed.manifestDigest, bytes: pushed.bytes, seconds: since(t0),
      layers: content.layers.map((l) => ({ title: l.title, entries: l.entries, tarBytes: l.tar.length, gzipBytes: l.gzip.length, diffId: l.diffId })) });

    const pre = opts.prerequisites ?? checkPrerequisites();
    {
      checkAbort();
      t0 = performance.now();
      const dst = `${registry.hostPort}/demo/app:1-obd`;
      const summary = await convertImage({
        src, dst, cacheDir: join(work, 'convert-records'), tmpDir: work, vsize: opts.vsize ?? 2 ** 30,
        onEvent: (e) => {
          // Throwing at a step unwinds the converter, which unmounts and stops what it started.
          // Not at 'progress': that one is called from inside a stream transform.
          if (e.step !== 'progress') checkAbort();
          if (e.step === 'layer-done') {
            emit({ step: 'convert-layer', layer: e.layer, how: e.how, blobDigest: e.blobDigest, sourceBytes: e.size, blobBytes: e.blobSize, seconds: e.seconds });
          }
        },
      });
      emit({ step: 'convert', status: 'done', reference: dst, manifest: summary.manifestDigest, layers: summary.layers,
        bytesIn: summary.bytesIn, bytesOut: summary.bytesOut, seconds: since(t0) });

      checkAbort();
      t0 = performance.now();
      // No background download: the counters then show what on-demand reads alone fetched.
      const image = await openRemoteImage(dst, { cacheDir: join(work, 'cache'), background: { enable: false },
        logStatsOnClose: false, statsIntervalMs: 0 });
      cleanups.push({ what: 'closed the image', undo: () => image.close() });
      const a = image.info.attach;
      emit({ step: 'attach', status: 'done', reference: dst, layers: image.info.layers.length, diskSize: image.info.diskSize,
        imageBytes: image.info.imageBytes, fetchedBytes: a.bytes, fetchedRequests: a.requests, layerBytes: a.bytes - a.metadataBytes, seconds: since(t0) });

      checkAbort();
      const why = opts.mount === false ? '--no-mount was given' : pre.mount.length > 0 ? 'this host cannot mount block devices' : undefined;
      let seen: Inspection;
      if (why) {
        skip('mount', `${why}; listing and reading through dadi's userspace ext4 reader instead`, pre.mount.length > 0 && opts.mount !== false ? pre.mount : undefined);
        seen = await inspectImage(await Ext4Reader.open(image.disk, dst), content);
      } else {
        t0 = performance.now();
        // Read-only: nothing is written back, so the kernel never throttles dirty pages against the
        // server living in this process; the mount is read one operation at a time for the same reason.
        const mountPoint = join(work, 'm', 'mnt');
        const mount = await mountDisk(image.disk, { mountPoint, workDir: join(work, 'm'), readOnly: true, description: dst })
          .catch((err: unknown) => {
            cleanups.push({ what: 'unmount', undo: async () => undoneBy(err) });
            throw err;
          });
        cleanups.push({ what: 'unmount', undo: () => mount.close() });
        emit({ step: 'mount', status: 'done', mountPoint, device: mount.device, method: mount.method, fsType: mount.fsType ?? 'unknown', seconds: since(t0) });

        checkAbort();
        seen = await inspectMount(mountPoint, content);
      }
      const treeProblems = seen.problems.filter((p) => !p.startsWith(`/${content.readPath} differs`));
      emit({ step: 'list', entries: seen.entries.length, root: seen.entries.filter((e) => !e.path.includes('/')).map((e) => e.path),
        matches: treeProblems.length === 0, seconds: seen.listSeconds, via: why ? 'userspace' : 'mount' });
      emit({ step: 'read', path: `/${seen.readPath}`, firstLine: seen.firstLine, bytes: seen.readBytes, matches: seen.contentMatches, seconds: seen.readSeconds });
      problems.push(...seen.problems);
      const s = image.stats();
      emit({ step: 'fetched', bytes: s.fetched.bytes, requests: s.fetched.requests, imageBytes: image.info.imageBytes,
        afterAttach: { bytes: s.fetched.bytes - a.bytes, requests: s.fetched.requests - a.requests },
        layers: s.layers.map((l, i) => ({ layer: l.index, blobBytes: image.info.layers[i]!.blobSize, fetchedBytes: l.fetched.bytes, requests: l.fetched.requests })),
        cacheHits: s.cache?.hits ?? 0, cacheMisses: s.cache?.misses ?? 0 });
    }
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
    // Ctrl-C reaches the tools a step runs too (mkfs, mount), so the step may fail rather than
    // stop at its boundary: that is still an interruption.
    if (opts.signal?.aborted && !(failure instanceof DemoInterrupted)) failure = new DemoInterrupted(` (the step under way ended with: ${failure.message})`);
  }
  {
    const t0 = performance.now();
    const undone: string[] = [];
    const errors: string[] = [];
    for (const c of cleanups.reverse()) {
      try {
        const did = await c.undo();
        undone.push(...(did ?? [c.what]));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    // Never recurse into a file system a failed teardown left mounted: rm would empty it.
    const stillMounted = await mountedUnder(work);
    if (stillMounted.length > 0) errors.push(`left ${work} in place: still mounted there: ${stillMounted.join(', ')}`);
    else if (!opts.keep) {
      await rm(work, { recursive: true, force: true }).then(() => undone.push(`removed ${work}`), (err: Error) => errors.push(`remove ${work}: ${err.message}`));
    }
    emit({ step: 'cleanup', undone, ...(opts.keep ? { kept: work } : {}), seconds: since(t0) });
    if (failure) {
      if (errors.length > 0) failure.message += `; cleaning up also failed: ${errors.join('; ')}`;
      throw failure;
    }
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  }
  const ok = problems.length === 0;
  emit({ step: 'done', ok, seconds: since(started), skipped, problems });
  return { ok, workDir: work, kept: opts.keep ?? false, skipped, problems };
}
