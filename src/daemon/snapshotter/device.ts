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
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { errorMessage } from '../../errors.ts';
import { hasLsmtMagic } from '../../format/lsmt/header.ts';
import { sealLayer } from '../../format/lsmt/seal.ts';
import { hasMagic as hasZfileMagic } from '../../format/zfile/header.ts';
import { loopsBackedBy, detachLoop } from '../../host/loop-device.ts';
import { mountDisk, MountBusyError, type MountHandle } from '../../host/mounter.ts';
import { mountTable } from '../../host/mount-table.ts';
import { stopNbdfuse } from '../../host/nbdfuse.ts';
import { identify, terminate } from '../../host/processes.ts';
import { runStep } from '../../host/run-tool.ts';
import type { DigestTableRef } from '../../format/tar/digest-table.ts';
import { layerChainConfig } from '../../image/chain/config.ts';
import { openImageChain, type LowerSpec, type UpperSpec } from '../../image/chain/image.ts';
import { openLayerChain, type ChainLayer, type LayerChainSpec } from '../../image/chain/layer.ts';
import { TraceTap } from '../../image/trace/tap.ts';
import type { LayerStack } from '../../disk/layer-stack.ts';
import { fileUpstream, registryUpstream, type BlobRoutes } from '../../image/chain/upstreams.ts';
import { mkfsArgs } from '../../image/convert/mkfs.ts';
import { BackgroundFill } from '../../image/remote/background.ts';
import type { BlobCache } from '../../io/cache.ts';
import type { RegistryClient } from '../../registry/client.ts';
import { log } from '../../util/log.ts';
import { Owner } from '../../util/owner.ts';
import { StepTimes } from '../../util/steps.ts';

export type LowerLayer =
  | { kind: 'remote'; registry: string; repository: string; digest: string; size: number; name: string; table?: DigestTableRef }
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
  /** Runs once the layers are open, before the mount reads them (starts trace record or replay). */
  beforeMount?: (d: TracedLayers) => Promise<void>;
}

/** What trace record and replay need of a device: its layers, their tap, and a hook at close. */
export interface TracedLayers {
  /** The lower layers, bottom first. */
  readonly layers: readonly ChainLayer[];
  /** Reports the layers' reads (trace record and replay). */
  readonly tap: TraceTap;
  /** The stacked lowers as a disk, with the merged index (file-list prefetch maps files to layers with it). */
  readonly stack: LayerStack;
  /** Runs `fn` when the device closes, before its layers close (stops a replay or a recording). */
  onClose(what: string, fn: () => Promise<unknown>): void;
}

export interface DeviceContext {
  client: RegistryClient;
  /** Mirrors and P2P tried before the origin for blob reads. */
  routes?: BlobRoutes;
  cache: BlobCache;
  background: { enable: boolean; delayMs: number; bytesPerSecond: number };
  /** Read-ahead (KiB) of the block device and of the nbdfuse file under it; undefined: the kernel's. */
  readAheadKB?: number;
}

export interface DeviceTimings { openMs: number; attachMs: number; mkfsMs: number; mountMs: number }

export interface AttachedDevice extends TracedLayers {
  readonly device: string;
  readonly mountPoint: string | undefined;
  readonly fsType: string | undefined;
  readonly timings: DeviceTimings;
  /** Wall time of each step of the attach (open of each layer, NBD server, nbdfuse, loop, mount), ms. */
  readonly steps: Record<string, number>;
  /** Registry bytes and requests for this device's layer blobs so far (the shared client's per-blob counters). */
  fetched(): { bytes: number; requests: number };
  /**
   * Demand reads of the layer blobs since the layers opened (the header and index reads of the
   * open itself come before any trace can help): misses waited on the registry, hits did not.
   */
  demand(): { misses: number; hits: number; missesAfterMount: number };
  /** Unmounts (lazily if busy and `force`), detaches, stops serving, flushes and closes the layers. */
  close(opts?: { force?: boolean }): Promise<void>;
}

export class DeviceBusyError extends Error {
  override readonly name = 'DeviceBusyError';
}

function chainSpec(l: LowerLayer, ctx: DeviceContext): LayerChainSpec {
  if (l.kind === 'remote') {
    const blob = { digest: l.digest, size: l.size, ...(l.table ? { table: l.table } : {}) };
    return { name: l.name, blob, upstream: registryUpstream(ctx.client, { registry: l.registry, repository: l.repository }, blob, ctx.routes) };
  }
  return { name: l.name, upstream: fileUpstream(l.path) };
}

/**
 * Opens a layer so that its header and index land in the block cache, and the attach that
 * follows (a container's rootfs Prepare) reads them locally. Started when a layer is pulled, it
 * overlaps with the rest of the pull. The caller closes the layer; while it is open, the attach
 * shares its cached blob instead of opening it again.
 */
export function warmLayer(l: LowerLayer, ctx: DeviceContext): Promise<ChainLayer> {
  return openLayerChain(chainSpec(l, ctx), layerChainConfig({ cache: ctx.cache }));
}

/** Attaches (and mounts) `spec` through the image chain and the host mounter; on failure undoes what it did and throws. */
export async function attachDevice(spec: DeviceSpec, ctx: DeviceContext): Promise<AttachedDevice> {
  const owner = new Owner();
  const steps = new StepTimes();
  const t0 = performance.now();
  try {
    const upper: UpperSpec | undefined = spec.upper && {
      data: spec.upper.data, index: spec.upper.index,
      // virtualSize 0: the size of the layers below (the image chain's default for a new layer).
      ...(spec.upper.create ? { create: spec.upper.create.virtualSize > 0 ? { virtualSize: spec.upper.create.virtualSize } : {} } : {}),
    };
    const tap = new TraceTap(spec.lowers.map((l) => l.name));
    let openMs = 0;
    // The layers open (index fetches) while the host side starts: the NBD server listens at once
    // and nbdfuse waits in the handshake until the disk below is ready.
    const opening = (async () => {
      const chain = await openImageChain({
        lowers: spec.lowers.map((l): LowerSpec => ({ chain: chainSpec(l, ctx) })),
        ...(upper ? { upper } : {}),
        config: layerChainConfig({ cache: ctx.cache, extra: { layer: [tap.filter()] } }),
        parallel: 32,
        measure: (i, open) => steps.time(`open${i}`, open),
      }, owner);
      const disk = chain.disk;
      owner.defer('flush', async () => { if (disk.writable) await disk.flush(); });
      openMs = performance.now() - t0;
      const countDemand = (): { misses: number; hits: number } => chain.layers.reduce((acc, l) => ({
        misses: acc.misses + (l.cached?.stats.misses ?? 0), hits: acc.hits + (l.cached?.stats.hits ?? 0) }), { misses: 0, hits: 0 });
      const atOpen = countDemand();
      if (ctx.background.enable) {
        const background = new BackgroundFill(chain.layers, { enable: true, delayMs: ctx.background.delayMs, maxBytesPerSec: ctx.background.bytesPerSecond });
        owner.defer('background download', async () => background.stop());
      }
      // Trace work stops before the layers close (and on a failed attach too).
      const beforeClose = new Owner();
      owner.defer('trace record/replay', () => beforeClose.close());
      const traced: TracedLayers = { layers: chain.layers, tap, stack: chain.stack, onClose: (what, fn) => beforeClose.defer(what, fn) };
      // Before the disk is handed to the server: a trace recording sees every read of the mount.
      if (spec.beforeMount) await steps.time('beforeMount', () => spec.beforeMount!(traced));
      return { chain, traced, countDemand, atOpen };
    })();
    let mount: MountHandle;
    try {
      mount = await mountDisk(opening.then((o) => o.chain.disk), {
        workDir: spec.workDir, readOnly: !spec.upper, description: spec.name,
        ...(spec.mountPoint ? { mountPoint: spec.mountPoint } : {}),
        ...(spec.mkfs ? { format: ['mkfs.ext4', ...mkfsArgs()] } : {}),
        ...(ctx.readAheadKB !== undefined ? { readAheadKB: ctx.readAheadKB } : {}),
        steps,
      });
    } catch (err) {
      // Whatever the opening still adopts must be in the owner before it closes.
      await opening.catch(() => {});
      throw err;
    }
    const { traced, countDemand, atOpen } = await opening;
    const atMount = countDemand();
    const blobs = spec.lowers.flatMap((l) => (l.kind === 'remote' ? [l.digest] : []));
    let closed = false;
    return {
      ...traced,
      demand: () => {
        const now = countDemand();
        return { misses: now.misses - atOpen.misses, hits: now.hits - atOpen.hits, missesAfterMount: now.misses - atMount.misses };
      },
      device: mount.device, mountPoint: mount.mountPoint, fsType: mount.fsType,
      timings: { openMs, attachMs: mount.timings.attachMs, mkfsMs: mount.timings.formatMs, mountMs: mount.timings.mountMs },
      steps: steps.rounded(),
      fetched: () => blobs.reduce((acc, d) => {
        const s = ctx.client.stats.blob(d);
        return { bytes: acc.bytes + s.bytes, requests: acc.requests + s.requests };
      }, { bytes: 0, requests: 0 }),
      close: async (opts = {}) => {
        if (closed) return;
        // A busy mount fails here before anything below it is touched, unless forced.
        let failure: Error | undefined;
        try {
          await mount.close({ busy: opts.force ? 'lazy' : 'fail' });
        } catch (err) {
          // Busy: nothing was torn down, so the caller may try again later.
          if (err instanceof MountBusyError) throw new DeviceBusyError(err.message, { cause: err });
          failure = new Error(`${spec.name}: detaching: ${errorMessage(err)}`, { cause: err });
        }
        closed = true;
        await owner.close();
        if (failure) throw failure;
      },
    };
  } catch (err) {
    await owner.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'undoing a failed attach'));
    throw err;
  }
}

/** Whether the first bytes of a file are an LSMT or ZFile header (formats.md §7.4 step 2). */
export function looksLikeLayer(head: Uint8Array): boolean {
  return hasLsmtMagic(head) || hasZfileMagic(head);
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
