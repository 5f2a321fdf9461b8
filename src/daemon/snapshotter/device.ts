/**
 * The one place the snapshotter touches the data path and the host: "attach these layers (plus
 * an optional writable layer) as a block device and mount it", "unmount and detach", and "clean
 * up what a killed daemon left in the kernel". Layers open in parallel (registry blobs by Range
 * through the shared block cache, local layer files directly), stack into one disk, which an NBD
 * server in this process exports on a unix socket; nbdfuse + a loop device (or the kernel nbd
 * driver) make it a block device, and its file system is mounted. Everything started is undone
 * in reverse order by close(), on failure too.
 *
 * Serving in-process is safe here because this process never reads or writes the mounts it
 * serves: the kernel's page writeback and containers' reads wait on us, never the reverse, and
 * mount, mkfs and umount run as child processes.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LayerStack } from '../../disk/layer-stack.ts';
import { LocalFileSource } from '../../disk/local-file.ts';
import { errorMessage } from '../../errors.ts';
import { openLayerSource } from '../../format/open-layer.ts';
import type { ReadOnlyLayer, WritableLayer } from '../../format/lsmt/types.ts';
import { createWritableLayer, openWritableLayer } from '../../format/lsmt/writable.ts';
import { hasLsmtMagic } from '../../format/lsmt/header.ts';
import { sealLayer } from '../../format/lsmt/seal.ts';
import { hasMagic as hasZfileMagic } from '../../format/zfile/header.ts';
import { attachExport, detachExport, type Attachment } from '../../host/attach.ts';
import { detectFsType } from '../../host/fs-type.ts';
import { loopsBackedBy, detachLoop } from '../../host/loop-device.ts';
import { mountFs, unmountFs } from '../../host/mount-fs.ts';
import { mountTable } from '../../host/mount-table.ts';
import { stopNbdfuse } from '../../host/nbdfuse.ts';
import { identify, terminate } from '../../host/processes.ts';
import { runStep } from '../../host/run-tool.ts';
import { mkfsArgs } from '../../image/convert/mkfs.ts';
import { openRemoteLayer, type RemoteLayer } from '../../image/remote/layer.ts';
import type { BlobCache } from '../../io/cache.ts';
import { NbdServer } from '../../nbd/server.ts';
import type { RegistryClient } from '../../registry/client.ts';
import { log } from '../../util/log.ts';

export type LowerLayer =
  | { kind: 'remote'; registry: string; repository: string; digest: string; size: number; name: string }
  | { kind: 'file'; path: string; name: string };

export interface DeviceSpec {
  /** Names the device in errors and logs (the image reference, the snapshot). */
  name: string;
  /** Read-only layers, bottom first. */
  lowers: LowerLayer[];
  /** A writable layer on top; `create` makes it first (virtualSize 0: the lowers' size). */
  upper?: { data: string; index: string; create?: { virtualSize: number } };
  /** Private directory for the socket, the nbdfuse mount and logs (must exist). */
  workDir: string;
  /** Mount the file system here (read-only unless there is an upper); absent: block device only. */
  mountPoint?: string;
  /** Make an ext4 file system on the new device first (a writable disk with nothing below). */
  mkfs?: boolean;
}

export interface DeviceContext {
  client: RegistryClient;
  cache: BlobCache;
  background: { enable: boolean; delayMs: number; bytesPerSecond: number };
  /** Read-ahead (KiB) of the block device and of the nbdfuse file under it; undefined: the kernel's. */
  readAheadKB?: number;
}

export interface DeviceTimings { openMs: number; attachMs: number; mkfsMs: number; mountMs: number }

export interface AttachedDevice {
  readonly device: string;
  readonly mountPoint: string | undefined;
  readonly fsType: string | undefined;
  readonly timings: DeviceTimings;
  /** Registry bytes and requests for this device's layer blobs so far (the shared client's per-blob counters). */
  fetched(): { bytes: number; requests: number };
  /** Unmounts (lazily if busy and `force`), detaches, stops serving, flushes and closes the layers. */
  close(opts?: { force?: boolean }): Promise<void>;
}

export class DeviceBusyError extends Error {
  override readonly name = 'DeviceBusyError';
}

async function openLower(l: LowerLayer, ctx: DeviceContext): Promise<ReadOnlyLayer> {
  if (l.kind === 'remote') {
    return openRemoteLayer(ctx.client, { registry: l.registry, repository: l.repository }, { digest: l.digest, size: l.size }, ctx.cache, l.name);
  }
  const src = await LocalFileSource.open(l.path);
  try {
    return await openLayerSource(src, l.name);
  } catch (err) {
    await src.close();
    throw err;
  }
}

/**
 * Opens a layer and closes it again: its header and index land in the block cache, so the
 * attach that follows (a container's rootfs Prepare) reads them locally. Started when a layer is
 * pulled, it overlaps with the rest of the pull.
 */
export async function warmLayer(l: LowerLayer, ctx: DeviceContext): Promise<void> {
  const layer = await openLower(l, ctx);
  await layer.close();
}

async function openUpper(u: NonNullable<DeviceSpec['upper']>, tag: number): Promise<WritableLayer> {
  if (u.create) await (await createWritableLayer(u.data, u.index, { virtualSize: u.create.virtualSize, tag })).close();
  return openWritableLayer(u.data, u.index, { tag });
}

/** Attaches and mounts `spec`; on failure undoes what it did and throws. */
export async function attachDevice(spec: DeviceSpec, ctx: DeviceContext): Promise<AttachedDevice> {
  const undo: Array<(force: boolean) => Promise<unknown>> = [];
  const t0 = performance.now();
  const timings: DeviceTimings = { openMs: 0, attachMs: 0, mkfsMs: 0, mountMs: 0 };
  const socket = join(spec.workDir, 'nbd.sock');
  if (Buffer.byteLength(socket) > 107) throw new Error(`${spec.name}: socket path ${socket} is longer than 107 bytes; use a shorter root directory`);
  const undoAll = async (force: boolean): Promise<void> => {
    const errors: string[] = [];
    for (const fn of undo.splice(0).reverse()) {
      try { await fn(force); } catch (err) { errors.push(errorMessage(err)); }
    }
    if (errors.length > 0) throw new Error(`${spec.name}: detaching: ${errors.join('; ')}`);
  };
  try {
    const settled = await Promise.allSettled(spec.lowers.map((l) => openLower(l, ctx)));
    const layers: ReadOnlyLayer[] = [];
    for (const s of settled) if (s.status === 'fulfilled') layers.push(s.value);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await Promise.allSettled(layers.map((l) => l.close()));
      throw failed.reason;
    }
    let upper: WritableLayer | undefined;
    if (spec.upper) {
      try {
        upper = await openUpper(spec.upper, layers.length);
      } catch (err) {
        await Promise.allSettled(layers.map((l) => l.close()));
        throw err;
      }
    }
    const disk = await LayerStack.open({ lowers: layers, ...(upper ? { upper } : {}) }).catch(async (err: unknown) => {
      await Promise.allSettled([...layers, ...(upper ? [upper] : [])].map((l) => l.close()));
      throw err;
    });
    undo.push(async () => {
      if (disk.writable) await disk.flush();
      await disk.close();
    });
    timings.openMs = performance.now() - t0;
    const background = startBackground(layers, ctx);
    if (background) undo.push(async () => background());

    const t1 = performance.now();
    const server = new NbdServer(disk, { description: spec.name });
    await rm(socket, { force: true });
    await server.listen({ unix: socket });
    undo.push(() => server.close());
    let attachment: Attachment | undefined;
    undo.push(async (force) => { if (attachment) await detachExport(attachment, force); });
    const device = await attachExport(socket, spec.workDir, !disk.writable, async (a) => { attachment = a; });
    if (ctx.readAheadKB !== undefined) await setReadAhead(device, attachment, ctx.readAheadKB);
    timings.attachMs = performance.now() - t1;

    if (spec.mkfs) {
      const t2 = performance.now();
      await runStep('mkfs', ['mkfs.ext4', ...mkfsArgs(), device], 300_000);
      timings.mkfsMs = performance.now() - t2;
    }
    let fsType: string | undefined;
    if (spec.mountPoint) {
      const t3 = performance.now();
      const mountPoint = spec.mountPoint;
      await mkdir(mountPoint, { recursive: true });
      undo.push(async (force) => {
        const r = await unmountFs(mountPoint, force).catch((err: Error) => {
          throw new DeviceBusyError(`${mountPoint} is in use: ${err.message}`);
        });
        if (r === 'lazy') log.warn({ mountPoint }, 'device mount was busy: detached lazily');
      });
      fsType = await mountFs(device, mountPoint, { readOnly: !disk.writable });
      timings.mountMs = performance.now() - t3;
    } else {
      fsType = await detectFsType(device);
    }
    const blobs = spec.lowers.flatMap((l) => (l.kind === 'remote' ? [l.digest] : []));
    let closed = false;
    return {
      device, mountPoint: spec.mountPoint, fsType, timings,
      fetched: () => blobs.reduce((acc, d) => {
        const s = ctx.client.stats.blob(d);
        return { bytes: acc.bytes + s.bytes, requests: acc.requests + s.requests };
      }, { bytes: 0, requests: 0 }),
      close: async (opts = {}) => {
        if (closed) return;
        // A busy mount fails here before anything below it is touched, unless forced.
        if (spec.mountPoint && !opts.force) await undoUntilMount(undo, spec.mountPoint);
        closed = true;
        await undoAll(opts.force ?? false);
      },
    };
  } catch (err) {
    await undoAll(true).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'undoing a failed attach'));
    throw err;
  }
}

/** Whether the first bytes of a file are an LSMT or ZFile header (formats.md §7.4 step 2). */
export function looksLikeLayer(head: Uint8Array): boolean {
  return hasLsmtMagic(head) || hasZfileMagic(head);
}

/**
 * Sets the read-ahead of the block device and, for nbdfuse, of the FUSE file's backing device
 * info (each level would otherwise read ahead on its own, fetching blocks nobody asked for).
 */
async function setReadAhead(device: string, a: Attachment | undefined, kb: number): Promise<void> {
  const { stat, writeFile } = await import('node:fs/promises');
  await writeFile(`/sys/block/${basename(device)}/queue/read_ahead_kb`, String(kb));
  if (a?.kind === 'nbdfuse') {
    const st = await stat(join(a.fuseDir, 'nbd'));
    const bdi = `/sys/class/bdi/${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}/read_ahead_kb`;
    await writeFile(bdi, String(kb)).catch((err: Error) => log.debug({ bdi, err: err.message }, 'setting nbdfuse read-ahead'));
  }
}

/**
 * Seals a detached writable layer in place (formats.md §2.8: index and trailer appended to the
 * data file) and moves the data file to `out`; the index file is deleted. Safe to repeat after a
 * crash: an already sealed data file is only moved.
 */
export async function sealWritableLayer(data: string, index: string, out: string): Promise<void> {
  const { access, rename: mv, rm: del } = await import('node:fs/promises');
  const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);
  if (await exists(data)) {
    if (await exists(index)) {
      await sealLayer(data, index).catch(async (err: unknown) => {
        // Sealed already (a crash after sealing, before the move): the trailer says so.
        if (!/already sealed/.test(errorMessage(err))) throw err;
      });
    }
    await mv(data, out);
  } else if (!(await exists(out))) {
    throw new Error(`neither ${data} nor ${out} exists: the writable layer is gone`);
  }
  await del(index, { force: true });
}

/** Runs the last undo step (the unmount) alone, so a busy mount is reported with nothing torn down. */
async function undoUntilMount(undo: Array<(force: boolean) => Promise<unknown>>, mountPoint: string): Promise<void> {
  const last = undo[undo.length - 1];
  if (!last) return;
  await last(false);
  undo.pop();
  log.debug({ mountPoint }, 'device unmounted');
}

/** After the configured delay, downloads the remote layers whole in the background (throttled). */
function startBackground(layers: readonly ReadOnlyLayer[], ctx: DeviceContext): (() => void) | undefined {
  if (!ctx.background.enable) return undefined;
  const remote = layers.filter((l): l is RemoteLayer => (l as RemoteLayer).cached !== undefined);
  if (remote.length === 0) return undefined;
  let stopped = false;
  const timer = setTimeout(() => {
    void (async () => {
      for (const l of remote) {
        if (stopped || !l.cached || l.cached.complete) continue;
        const opts = ctx.background.bytesPerSecond ? { maxBytesPerSec: ctx.background.bytesPerSecond } : {};
        await l.cached.startBackgroundDownload(opts).done.catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'background download failed'));
      }
    })();
  }, ctx.background.delayMs);
  timer.unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Tears down what a killed daemon left under `root`: mounts (deepest first, lazily: their server
 * is gone), loop devices backed by nbdfuse files there, nbdfuse mounts and processes. Returns
 * what it undid, for the log.
 */
export async function cleanupStaleDevices(root: string): Promise<string[]> {
  const done: string[] = [];
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const mounts = (await mountTable()).filter((m) => m.mountPoint.startsWith(prefix) && m.fsType !== 'fuse' && !m.fsType.startsWith('fuse.'));
  for (const m of mounts.sort((a, b) => b.mountPoint.length - a.mountPoint.length)) {
    await runStep('unmount stale', ['umount', '-l', m.mountPoint]).catch((err: Error) => log.warn({ err: err.message }, 'stale unmount'));
    done.push(`unmounted ${m.mountPoint}`);
  }
  const fuseMounts = (await mountTable()).filter((m) => m.mountPoint.startsWith(prefix) && (m.fsType === 'fuse' || m.fsType.startsWith('fuse.')));
  for (const f of fuseMounts) {
    for (const loop of await loopsBackedBy(join(f.mountPoint, 'nbd'))) {
      await detachLoop(loop, 0).catch((err: Error) => log.warn({ err: err.message }, 'stale loop detach'));
      done.push(`detached ${loop}`);
    }
    await stopNbdfuse(f.mountPoint, undefined, true).catch((err: Error) => log.warn({ err: err.message }, 'stale nbdfuse unmount'));
    done.push(`stopped nbdfuse on ${f.mountPoint}`);
  }
  for (const pid of await nbdfuseProcessesUnder(prefix)) {
    await terminate(identify(pid), 2_000);
    done.push(`ended nbdfuse pid ${pid}`);
  }
  return done;
}

/** nbdfuse processes whose arguments name a path under `prefix` (ours, from an earlier run). */
async function nbdfuseProcessesUnder(prefix: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (basename(argv[0] ?? '') !== 'nbdfuse') continue;
    if (argv.some((a) => a.startsWith(prefix))) out.push(Number(name));
  }
  return out;
}
