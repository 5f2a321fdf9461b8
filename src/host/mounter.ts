/**
 * Mounts as values: an NBD export attached as a block device (kernel nbd, or nbdfuse + a loop
 * device), optionally given a file system, and mounted — described by a plain state object that
 * names every piece that exists, updated as each step starts, so whoever holds it (a handle in
 * this process, a record on disk for `dadi umount` in another) undoes exactly what is there with
 * the same code. `mountDisk` serves a Disk in this process and returns a handle with one close();
 * without a mount point it stops at the block device (a VM's disk, the snapshotter's dev mode).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Disk } from '../io/types.ts';
import { NbdServer } from '../nbd/server.ts';
import { attachExport, detachExport, type Attachment } from './attach.ts';
import { detectDiskFsType, detectFsType, type FsType } from './fs-type.ts';
import { mountFs, unmountFs } from './mount-fs.ts';
import { mountAt } from './mount-table.ts';
import { setReadAhead } from './read-ahead.ts';
import { HostStepError, runStep } from './run-tool.ts';
import type { StepTimes } from '../util/steps.ts';

/** What exists of one mount; every field is set before the step it describes can leave something behind. */
export interface MountState {
  /** Where the file system is mounted; absent for a block device only. */
  mountPoint?: string;
  readOnly: boolean;
  attach?: Attachment;
  /** The block device the file system is on, once attached. */
  device?: string;
  fsType?: string;
  mounted?: boolean;
}

export interface AttachMountOptions {
  /** Private directory for the nbdfuse mount and logs. */
  workDir: string;
  /** Run this (with the device appended) between attach and mount, e.g. mkfs. */
  format?: string[];
  mountOptions?: string[];
  /** Read-ahead of the block device and of the nbdfuse file under it, KiB (default: the kernel's). */
  readAheadKB?: number;
  /** Called after every step, with the state so far (to persist it). */
  progress?: (state: MountState) => Promise<void>;
  /** Records the wall time of each host step (nbdfuse, losetup, mount...). */
  steps?: StepTimes;
  /**
   * Settles when the server can answer the NBD handshake (its disk still opening until then):
   * the wait for the client to come up counts its timeout from here.
   */
  serverReady?: Promise<unknown>;
  /** The file system the export holds when known without reading the device (ignored with `format`). */
  fsType?: Promise<FsType | undefined>;
}

/** How long each step took, for start-up reports. */
export interface MountTimings { attachMs: number; formatMs: number; mountMs: number }

/** sockaddr_un holds 108 bytes including the terminating NUL. */
export function checkSocketPath(socket: string, hint: string): void {
  if (Buffer.byteLength(socket) > 107) throw new HostStepError('prepare', `socket path ${socket} is longer than 107 bytes; ${hint}`);
}

/** Attaches the export on `socket`, formats it if asked, and mounts it; `state` records each step. */
export async function attachAndMount(socket: string, state: MountState, opts: AttachMountOptions): Promise<MountTimings> {
  const save = opts.progress ?? (async () => {});
  const timings: MountTimings = { attachMs: 0, formatMs: 0, mountMs: 0 };
  let t = performance.now();
  state.device = await attachExport(socket, opts.workDir, state.readOnly, async (a) => { state.attach = a; await save(state); },
    { ...(opts.steps ? { steps: opts.steps } : {}), ...(opts.serverReady ? { serverReady: opts.serverReady } : {}) });
  // A read-only export gives a read-only device; mount it read-only rather than let mount(8)
  // silently fall back and leave the state saying rw.
  if (!state.readOnly && (await deviceReadOnly(state.device))) state.readOnly = true;
  const r = performance.now();
  if (opts.readAheadKB !== undefined) await setReadAhead(state.device, state.attach, opts.readAheadKB);
  await save(state);
  opts.steps?.add('readAhead+save', performance.now() - r);
  timings.attachMs = performance.now() - t;
  if (opts.format) {
    t = performance.now();
    await runStep('format', [...opts.format, state.device], 300_000);
    timings.formatMs = performance.now() - t;
  }
  t = performance.now();
  const known = opts.format ? undefined : await opts.fsType?.catch(() => undefined);
  if (state.mountPoint) {
    state.fsType = await mountFs(state.device, state.mountPoint, { readOnly: state.readOnly, ...(opts.mountOptions ? { extraOptions: opts.mountOptions } : {}) }, opts.steps, known);
    state.mounted = true;
    await save(state);
  } else {
    state.fsType = known ?? (await detectFsType(state.device).catch(() => undefined)) ?? undefined;
  }
  timings.mountMs = performance.now() - t;
  return timings;
}

async function deviceReadOnly(device: string): Promise<boolean> {
  const flag = await readFile(`/sys/block/${basename(device)}/ro`, 'utf8').catch(() => '0');
  return flag.trim() === '1';
}

export interface UndoResult {
  /** What was undone, in order, for people (`unmounted /mnt`, `detached /dev/loop0 and stopped nbdfuse`). */
  undone: string[];
  /** The file system was busy and only lazily detached: it may still hold dirty pages. */
  lazy: boolean;
  /** Detaching failed (the state still names what is left). */
  errors: string[];
}

/**
 * Unmounts (only our own mount: the kernel is asked, and DIR may hold someone else's) and
 * detaches whatever `state` says exists; safe to repeat. A busy file system is detached lazily
 * when `lazyIfBusy`, else the busy error is thrown and nothing underneath is touched. Detach
 * failures are returned, so the caller still stops the server.
 */
export async function undoMount(state: MountState, lazyIfBusy: boolean): Promise<UndoResult> {
  const undone: string[] = [];
  let lazy = false;
  const mounted = state.mountPoint ? await mountAt(state.mountPoint) : undefined;
  if (state.mountPoint && mounted && state.device && mounted.source === state.device) {
    lazy = (await unmountFs(state.mountPoint, lazyIfBusy)) === 'lazy';
    undone.push(lazy ? `lazily unmounted ${state.mountPoint}` : `unmounted ${state.mountPoint}`);
  }
  state.mounted = false;
  const errors: string[] = [];
  if (state.attach) {
    const a = state.attach;
    try {
      await detachExport(a, lazy);
      state.attach = undefined;
      state.device = undefined;
      undone.push(a.kind === 'kernel-nbd' ? `detached ${a.device ?? 'the nbd device'}` : `detached ${a.loopDevice ?? 'the loop device'} and stopped nbdfuse`);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  return { undone, lazy, errors };
}

/** What mountDisk throws: the cause, plus what it undid of the partial mount. */
export type MountFailure = Error & { undone: string[] };

export function undoneBy(err: unknown): string[] {
  const undone = (err as Partial<MountFailure> | undefined)?.undone;
  return Array.isArray(undone) ? undone : [];
}

/** The file system was still in use: nothing was torn down (close({ busy: 'fail' })). */
export class MountBusyError extends Error {
  override readonly name = 'MountBusyError';
}

export interface CloseOptions {
  /** A lazily detached (busy) file system is an error: its last writes may not have reached the disk. */
  strict?: boolean;
  /** A busy file system: detach it lazily (default), or fail with MountBusyError leaving everything in place. */
  busy?: 'lazy' | 'fail';
}

/** A Disk attached (and mounted) through this process's own NBD server. */
export interface MountHandle {
  /** Absent when only the block device was attached. */
  readonly mountPoint: string | undefined;
  readonly device: string;
  readonly fsType: string | undefined;
  readonly readOnly: boolean;
  readonly method: Attachment['kind'];
  readonly socket: string;
  /** Processes started for the mount (nbdfuse), for status output. */
  readonly processes: number[];
  readonly timings: MountTimings;
  /**
   * Unmounts, detaches and stops the server, whatever of it exists; safe to repeat. Returns what
   * it undid.
   */
  close(opts?: CloseOptions): Promise<string[]>;
}

export interface MountDiskOptions extends Omit<AttachMountOptions, 'progress'> {
  /** Mount the file system here; without it, only the block device is attached. */
  mountPoint?: string;
  readOnly: boolean;
  /** Names the export (NBD description). */
  description?: string;
}

/**
 * Serves `disk` on a unix socket in `workDir`, attaches and mounts it. On failure undoes
 * everything it started and throws. The disk stays the caller's: close it after the handle.
 *
 * Nothing that writes into a writable mount may then run on this thread or on libuv's pool: a
 * write blocked in dirty-page throttling would starve the server that unblocks it (the
 * converter applies layers on a worker thread with synchronous calls for that reason).
 */
export async function mountDisk(disk: Disk | Promise<Disk>, opts: MountDiskOptions): Promise<MountHandle> {
  const socket = join(opts.workDir, 'nbd.sock');
  const opened = Promise.resolve(disk);
  // Rejections are reported below, after the attach steps under way have settled.
  opened.catch(() => {});
  checkSocketPath(socket, 'use a shorter TMPDIR or work directory');
  if (opts.mountPoint) await mkdir(opts.mountPoint, { recursive: true });
  const state: MountState = { ...(opts.mountPoint ? { mountPoint: opts.mountPoint } : {}), readOnly: opts.readOnly };
  let server: NbdServer | undefined = new NbdServer(disk, { description: opts.description ?? opts.mountPoint ?? opts.workDir });
  const close = async (o: CloseOptions): Promise<string[]> => {
    const undone: string[] = [];
    const errors: string[] = [];
    try {
      const r = await undoMount(state, o.busy !== 'fail');
      undone.push(...r.undone);
      errors.push(...r.errors);
      if (r.lazy && o.strict) errors.push(`${state.mountPoint} was busy and only lazily unmounted: its last writes may not be on the disk`);
    } catch (err) {
      if (o.busy === 'fail') throw new MountBusyError(`${state.mountPoint} is in use: ${(err as Error).message}`, { cause: err });
      errors.push((err as Error).message);
    }
    if (server) {
      const s = server;
      server = undefined;
      try {
        await s.close();
        undone.push('stopped the NBD server');
      } catch (err) {
        errors.push(`stopping the NBD server: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0) throw new HostStepError('unmount', `${errors.join('; ')} (undone: ${undone.join(', ') || 'nothing'})`);
    return undone;
  };
  let timings: MountTimings;
  try {
    await (opts.steps ? opts.steps.time('listen', () => server!.listen({ unix: socket })) : server.listen({ unix: socket }));
    // nbdfuse starts while the disk is still opening (the server holds its connection until
    // then); the file system type is read from the disk itself meanwhile.
    const fsType = opened.then((d) => detectDiskFsType(d));
    fsType.catch(() => {});
    const attached = attachAndMount(socket, state, { ...opts, serverReady: opened, fsType });
    const [o, a] = await Promise.allSettled([opened, attached]);
    // A disk that failed to open is the cause; the attach then failed only for want of it.
    if (o.status === 'rejected') throw o.reason;
    if (a.status === 'rejected') throw a.reason;
    timings = a.value;
  } catch (err) {
    // What the failed mount undid travels with the error, for callers that report cleanup.
    const undone = await close({}).catch((undo: Error) => {
      (err as Error).message += `; cleaning up also failed: ${undo.message}`;
      return [];
    });
    throw Object.assign(err as Error, { undone });
  }
  const a = state.attach!;
  return {
    mountPoint: state.mountPoint, device: state.device!, fsType: state.fsType, readOnly: state.readOnly, method: a.kind, socket,
    processes: a.kind === 'nbdfuse' && a.nbdfuse ? [a.nbdfuse.pid] : [],
    timings,
    close: (o) => close(o ?? {}),
  };
}
