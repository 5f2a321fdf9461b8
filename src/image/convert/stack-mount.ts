/**
 * The converted lowers plus a new writable layer, served by an NBD server in this process,
 * attached through src/host (kernel nbd or nbdfuse + loop) and mounted read-write — with mkfs
 * between attach and mount for the first layer. The kernel writes the mounted file system back
 * through this server, so nothing that writes into the mount may run on this thread or on
 * libuv's pool (a write blocked in dirty-page throttling would starve the server that unblocks
 * it): the layer is applied on a worker thread (apply-thread.ts) with synchronous calls, and
 * mkfs, mount and umount are child processes.
 *
 * Everything started is remembered as it starts and undone in reverse order, on success and on
 * failure alike, so a failing layer leaves nothing mounted, attached or open.
 */
import { join } from 'node:path';
import { attachExport, detachExport, type Attachment } from '../../host/attach.ts';
import { mountFs, unmountFs } from '../../host/mount-fs.ts';
import { HostStepError, runStep } from '../../host/run-tool.ts';
import type { Disk } from '../../io/types.ts';
import { NbdServer } from '../../nbd/server.ts';
import { openLocalImage } from '../local.ts';
import { mkfsArgs } from './mkfs.ts';

export interface StackMountOptions {
  /** Converted layer files, lowest first. */
  lowers: string[];
  /** Directory for the new writable layer (writable_data + writable_index). */
  writableDir: string;
  /** Virtual size of the writable layer; only for the first layer (later ones take the lowers'). */
  size?: number;
  /** Make the file system (first layer only). */
  mkfs: boolean;
  mountPoint: string;
  /** Private directory for the socket, logs and the nbdfuse mount (short: the socket path must fit 107 bytes). */
  workDir: string;
}

/**
 * Serves, attaches, (mkfs,) mounts, runs `fn` on the mount point, then unmounts (flushing the file
 * system into the writable layer), stops the server and flushes and closes the layer. Teardown
 * errors after a successful `fn` fail the call: an unclean unmount could lose the layer's last writes.
 */
export async function withMountedStack<T>(opts: StackMountOptions, fn: (mountPoint: string) => Promise<T>): Promise<T> {
  const socket = join(opts.workDir, 'nbd.sock');
  if (Buffer.byteLength(socket) > 107) throw new HostStepError('prepare', `socket path ${socket} is longer than 107 bytes`);
  let disk: Disk | undefined;
  let server: NbdServer | undefined;
  let attach: Attachment | undefined;
  let mounted = false;
  const teardown = async (): Promise<string[]> => {
    const errors: string[] = [];
    let lazy = false;
    if (mounted) {
      try {
        // Busy at the end means something still holds the mount: the file system lives on with
        // dirty pages after a lazy unmount, so the layer would be committed without them.
        lazy = (await unmountFs(opts.mountPoint, true)) === 'lazy';
        if (lazy) errors.push(`${opts.mountPoint} was busy and only lazily unmounted: its last writes may not be in the layer`);
      } catch (err) { errors.push((err as Error).message); }
      mounted = false;
    }
    if (attach) {
      try { await detachExport(attach, lazy); } catch (err) { errors.push((err as Error).message); }
      attach = undefined;
    }
    if (server) {
      try { await server.close(); } catch (err) { errors.push(`stopping the NBD server: ${(err as Error).message}`); }
      server = undefined;
    }
    if (disk) {
      try { await disk.flush(); } catch (err) { errors.push(`flushing the writable layer: ${(err as Error).message}`); }
      try { await disk.close(); } catch (err) { errors.push(`closing the image: ${(err as Error).message}`); }
      disk = undefined;
    }
    return errors;
  };
  let result: T;
  try {
    disk = await openLocalImage(opts.lowers, { writableDir: opts.writableDir, ...(opts.size !== undefined ? { size: opts.size } : {}) });
    server = new NbdServer(disk, { description: `dadi convert ${opts.writableDir}` });
    await server.listen({ unix: socket });
    const device = await attachExport(socket, opts.workDir, false, async (a) => { attach = a; });
    if (opts.mkfs) await runStep('mkfs', ['mkfs.ext4', ...mkfsArgs(), device], 300_000);
    // noinit_itable: mkfs left the inode tables to be zeroed lazily; the device reads zeros
    // there already, and the kernel's background zeroing would only bloat the layer.
    await mountFs(device, opts.mountPoint, { readOnly: false, extraOptions: ['noinit_itable'] });
    mounted = true;
    result = await fn(opts.mountPoint);
  } catch (err) {
    const errors = await teardown().catch((e: Error) => [e.message]);
    if (errors.length > 0) (err as Error).message += `; cleaning up also failed: ${errors.join('; ')}`;
    throw err;
  }
  const errors = await teardown();
  if (errors.length > 0) throw new HostStepError('unmount', errors.join('; '));
  return result;
}
