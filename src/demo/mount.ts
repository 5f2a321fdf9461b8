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

export interface MountedImage {
  mountPoint: string;
  device: string;
  fsType: string;
  socket: string;
  method: Attachment['kind'];
}

/**
 * One read-only mount of `disk`. Create it, register `unmount` for cleanup, then `mount`: a
 * failed mount leaves its partial state for `unmount` to undo and report like any other.
 */
export class DemoMount {
  readonly socket: string;
  readonly mountPoint: string;
  private server: NbdServer | undefined;
  private attach: Attachment | undefined;
  private device: string | undefined;

  constructor(private readonly disk: Disk, private readonly workDir: string, private readonly description: string) {
    this.socket = join(workDir, 'nbd.sock');
    this.mountPoint = join(workDir, 'mnt');
  }

  async mount(): Promise<MountedImage> {
    // sockaddr_un holds 108 bytes including the terminating NUL.
    if (Buffer.byteLength(this.socket) > 107) throw new Error(`socket path ${this.socket} is longer than 107 bytes; use a shorter TMPDIR`);
    await mkdir(this.mountPoint, { recursive: true });
    this.server = new NbdServer(this.disk, { description: this.description });
    await this.server.listen({ unix: this.socket });
    const device = await attachExport(this.socket, this.workDir, true, async (a) => { this.attach = a; });
    this.device = device;
    const fsType = await mountFs(device, this.mountPoint, { readOnly: true });
    return { mountPoint: this.mountPoint, device, fsType, socket: this.socket, method: this.attach!.kind };
  }

  /** Unmounts, detaches and stops the server, whatever of it exists; returns what it undid, in order. */
  async unmount(): Promise<string[]> {
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
    if (this.device) {
      // Asks the kernel rather than a flag: a mount that failed late may still have happened.
      // Our server is alive until the end, so a busy mount is detached lazily rather than left behind.
      await step(`unmounted ${this.mountPoint}`, async () => (await unmountFs(this.mountPoint, true)) !== 'not-mounted');
    }
    if (this.attach) {
      const a = this.attach;
      this.attach = undefined;
      const dev = a.kind === 'kernel-nbd' ? a.device : a.loopDevice;
      await step(a.kind === 'kernel-nbd' ? `detached ${dev ?? 'the nbd device'}` : `detached ${dev ?? 'the loop device'} and stopped nbdfuse`,
        () => detachExport(a));
    }
    this.device = undefined;
    if (this.server) {
      const s = this.server;
      this.server = undefined;
      await step('stopped the NBD server', () => s.close());
    }
    if (errors.length > 0) throw new Error(`cleaning up the mount failed: ${errors.join('; ')} (undone: ${undone.join(', ') || 'nothing'})`);
    return undone;
  }
}
