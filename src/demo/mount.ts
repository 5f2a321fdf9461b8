/**
 * Mounts a lazily attached image read-only with everything but nbdfuse in this process: the NBD
 * server runs on the image's own Disk, so the registry fetches and cache hits the mount causes
 * show up in the image's counters. Read-only matters: nothing is written back, so the kernel
 * never throttles dirty pages against a server living in the process that reads the files
 * (the reason the converter serves from another process). Callers read the mount one operation
 * at a time for the same reason: a blocked libuv thread waits on this process's own server.
 *
 * Each step is remembered as it starts; `unmount` undoes whatever exists, and is safe to repeat.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { attachExport, detachExport, type Attachment } from '../host/attach.ts';
import { mountFs, unmountFs } from '../host/mount-fs.ts';
import { NbdServer } from '../nbd/server.ts';
import type { Disk } from '../io/types.ts';

export interface DemoMount {
  mountPoint: string;
  device: string;
  fsType: string;
  socket: string;
  method: Attachment['kind'];
  /** Unmounts, detaches and stops the server; returns what it undid, in order. */
  unmount(): Promise<string[]>;
}

export async function mountDisk(disk: Disk, workDir: string, description: string): Promise<DemoMount> {
  const socket = join(workDir, 'nbd.sock');
  // sockaddr_un holds 108 bytes including the terminating NUL.
  if (Buffer.byteLength(socket) > 107) throw new Error(`socket path ${socket} is longer than 107 bytes; use a shorter TMPDIR`);
  const mountPoint = join(workDir, 'mnt');
  await mkdir(mountPoint, { recursive: true });
  let server: NbdServer | undefined;
  let attach: Attachment | undefined;
  let device: string | undefined;

  const unmount = async (): Promise<string[]> => {
    const undone: string[] = [];
    const errors: string[] = [];
    /** `fn` returns false when there was nothing to undo. */
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        if ((await fn()) !== false) undone.push(what);
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    if (device) {
      // Asks the kernel, not only our flag: a mount that failed late may still have happened.
      // Our server is alive until the end, so a busy mount is detached lazily rather than left behind.
      await step(`unmounted ${mountPoint}`, async () => (await unmountFs(mountPoint, true)) !== 'not-mounted');
    }
    if (attach) {
      const a = attach;
      attach = undefined;
      await step(a.kind === 'kernel-nbd' ? `detached ${device ?? 'nbd device'}` : `detached ${device ?? 'loop device'} and stopped nbdfuse`, () => detachExport(a));
    }
    if (server) {
      const s = server;
      server = undefined;
      await step('stopped the NBD server', () => s.close());
    }
    if (errors.length > 0) throw new Error(`cleaning up the mount failed: ${errors.join('; ')} (undone: ${undone.join(', ') || 'nothing'})`);
    return undone;
  };

  try {
    server = new NbdServer(disk, { description });
    await server.listen({ unix: socket });
    device = await attachExport(socket, workDir, true, async (a) => { attach = a; });
    const fsType = await mountFs(device, mountPoint, { readOnly: true });
    return { mountPoint, device, fsType, socket, method: attach!.kind, unmount };
  } catch (err) {
    try {
      await unmount();
    } catch (undoErr) {
      (err as Error).message += `; ${(undoErr as Error).message}`;
    }
    throw err;
  }
}
