/**
 * The converted lowers plus a new writable layer, mounted read-write through the host mounter
 * (an NBD server in this process, attached as a block device) — with mkfs between attach and
 * mount for the first layer. The kernel writes the mounted file system back through this
 * process's server, so nothing that writes into the mount may run on this thread or on libuv's
 * pool: the layer is applied on a worker thread (apply-thread.ts) with synchronous calls, and
 * mkfs, mount and umount are child processes.
 */
import { HostStepError } from '../../host/run-tool.ts';
import { mountDisk } from '../../host/mounter.ts';
import type { Disk } from '../../io/types.ts';
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
 * Mounts, runs `fn` on the mount point, then unmounts (flushing the file system into the writable
 * layer), stops the server and flushes and closes the layer. Teardown errors after a successful
 * `fn` fail the call: an unclean unmount could lose the layer's last writes.
 */
export async function withMountedStack<T>(opts: StackMountOptions, fn: (mountPoint: string) => Promise<T>): Promise<T> {
  const disk: Disk = await openLocalImage(opts.lowers, { writableDir: opts.writableDir, ...(opts.size !== undefined ? { size: opts.size } : {}) });
  const closeDisk = async (): Promise<string[]> => {
    const errors: string[] = [];
    try { await disk.flush(); } catch (err) { errors.push(`flushing the writable layer: ${(err as Error).message}`); }
    try { await disk.close(); } catch (err) { errors.push(`closing the image: ${(err as Error).message}`); }
    return errors;
  };
  let result: T;
  try {
    // noinit_itable: mkfs left the inode tables to be zeroed lazily; the device reads zeros
    // there already, and the kernel's background zeroing would only bloat the layer.
    const mount = await mountDisk(disk, {
      mountPoint: opts.mountPoint, workDir: opts.workDir, readOnly: false, description: `dadi convert ${opts.writableDir}`,
      ...(opts.mkfs ? { format: ['mkfs.ext4', ...mkfsArgs()] } : {}), mountOptions: ['noinit_itable'],
    });
    try {
      result = await fn(opts.mountPoint);
    } catch (err) {
      await mount.close().catch((e: Error) => { (err as Error).message += `; cleaning up also failed: ${e.message}`; });
      throw err;
    }
    // Busy at the end means something still holds the mount: the file system lives on with
    // dirty pages after a lazy unmount, so the layer would be committed without them.
    await mount.close({ strict: true });
  } catch (err) {
    const errors = await closeDisk();
    if (errors.length > 0) (err as Error).message += `; cleaning up also failed: ${errors.join('; ')}`;
    throw err;
  }
  const errors = await closeDisk();
  if (errors.length > 0) throw new HostStepError('unmount', errors.join('; '));
  return result;
}
