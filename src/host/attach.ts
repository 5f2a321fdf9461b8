/**
 * Attaching an NBD export (on a unix socket) as a block device, by whichever path this host
 * offers: the kernel nbd driver when loaded, else nbdfuse + a loop device. Progress is reported
 * step by step so that the caller's record always names everything that needs undoing.
 */
import { join } from 'node:path';
import { attachKernelNbd, detachKernelNbd, kernelNbdAvailable } from './kernel-nbd.ts';
import { attachLoop, detachLoop, loopsBackedBy } from './loop-device.ts';
import { startNbdfuse, stopNbdfuse } from './nbdfuse.ts';
import type { MountRecord } from './state.ts';
import type { StepTimes } from '../util/steps.ts';

export type Attachment = NonNullable<MountRecord['attach']>;
export type AttachMethod = 'kernel-nbd' | 'nbdfuse';

/** $DADI_ATTACH forces a method; otherwise kernel nbd when /dev/nbd0 and nbd-client exist. */
export function chooseAttachMethod(): AttachMethod {
  const forced = process.env.DADI_ATTACH;
  if (forced === 'kernel-nbd' || forced === 'nbdfuse') return forced;
  return kernelNbdAvailable() ? 'kernel-nbd' : 'nbdfuse';
}

/**
 * Attaches the export on `socket`; `progress` is awaited with the attachment so far after each
 * step that leaves something to undo. Returns the block device path.
 */
export async function attachExport(
  socket: string, workDir: string, readOnly: boolean, progress: (a: Attachment) => Promise<void>,
  opts: { steps?: StepTimes; serverReady?: Promise<unknown> } = {},
): Promise<string> {
  const { steps } = opts;
  const t = performance.now();
  if (chooseAttachMethod() === 'kernel-nbd') {
    await progress({ kind: 'kernel-nbd' });
    // nbd-client's own timeouts would count the disk's opening time: start it once the server can answer.
    await opts.serverReady;
    const device = await attachKernelNbd(socket, { readOnly });
    steps?.add('nbd-client', performance.now() - t);
    await progress({ kind: 'kernel-nbd', device });
    return device;
  }
  const fuseDir = join(workDir, 'fuse');
  const a: Attachment = { kind: 'nbdfuse', fuseDir };
  await progress(a);
  const fuse = await startNbdfuse(socket, fuseDir, {
    readOnly,
    logFile: join(workDir, 'nbdfuse.log'),
    onStarted: (p) => progress({ ...a, nbdfuse: p }),
    ...(opts.serverReady ? { serverReady: opts.serverReady } : {}),
  });
  steps?.add('nbdfuse', performance.now() - t);
  const loopDevice = await attachLoop(fuse.file, readOnly, steps);
  await progress({ ...a, nbdfuse: fuse.nbdfuse, loopDevice });
  return loopDevice;
}

/**
 * Undoes whatever part of an attachment exists; safe to repeat. `lazy` (the file system above
 * was lazily unmounted and may still hold the device) detaches without waiting for release.
 */
export async function detachExport(a: Attachment, lazy = false): Promise<void> {
  if (a.kind === 'kernel-nbd') {
    if (a.device) await detachKernelNbd(a.device);
    return;
  }
  // The kernel's list, not only our record: losetup may have run without us recording it.
  const loops = new Set(await loopsBackedBy(join(a.fuseDir, 'nbd')));
  if (a.loopDevice) loops.add(a.loopDevice);
  for (const dev of loops) {
    const current = await loopsBackedBy(join(a.fuseDir, 'nbd'));
    if (current.includes(dev)) await detachLoop(dev, lazy ? 0 : 5_000);
  }
  await stopNbdfuse(a.fuseDir, a.nbdfuse, lazy);
}
