/**
 * Loop devices over the file nbdfuse exposes. The kernel's own view (/sys/block/loopN/loop/
 * backing_file) is the truth for teardown: it survives a crash of `dadi mount` between losetup
 * and writing the state record, and reading it never touches a possibly hung FUSE file.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { runTool, HostStepError } from './run-tool.ts';
import type { StepTimes } from '../util/steps.ts';

/**
 * Attaches `file` to a free loop device and returns its path (/dev/loopN). losetup and the
 * buffer flush run in one shell: each process started from a large daemon costs more than the
 * tool itself.
 */
export async function attachLoop(file: string, readOnly: boolean, steps?: StepTimes): Promise<string> {
  const t = performance.now();
  // A loop device number is reused as soon as it is free, and the kernel may still cache blocks
  // the device read for its previous backing file (another image): a mount would then read a
  // stale superblock or directory (missing files, EBADMSG). Drop them before anything reads.
  // The device is printed before the flush so that a failed flush still names it.
  const script = `d=$(losetup --find --show --direct-io=off ${readOnly ? '--read-only ' : ''}"$1") || exit 90; echo "$d"; blockdev --flushbufs "$d" || exit 91`;
  const r = await runTool(['sh', '-c', script, 'sh', file]);
  steps?.add('losetup+flushbufs', performance.now() - t);
  const out = r.stdout.trim();
  const argv = `losetup --find --show --direct-io=off ${readOnly ? '--read-only ' : ''}${file}`;
  if (r.timedOut) throw new HostStepError('attach loop device', `${argv} did not finish in time`, r.stderr);
  if (r.code === 90) throw new HostStepError('attach loop device', `${argv} failed`, r.stderr);
  if (r.code !== 0) throw new HostStepError('flush loop device buffers', `blockdev --flushbufs ${out} failed (exit ${r.code ?? 'signal'})`, r.stderr);
  if (!/^\/dev\/loop\d+$/.test(out)) throw new HostStepError('attach loop device', `losetup printed ${JSON.stringify(out)}, not a loop device`);
  return out;
}

async function backingFile(loopName: string): Promise<string | undefined> {
  try {
    return (await readFile(`/sys/block/${loopName}/loop/backing_file`, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Every loop device whose backing file is `file` (normally zero or one). */
export async function loopsBackedBy(file: string): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir('/sys/block')).filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const n of names) {
    const b = await backingFile(n);
    // The kernel appends " (deleted)" when the path no longer resolves.
    if (b !== undefined && (b === file || b === `${file} (deleted)`)) found.push(`/dev/${n}`);
  }
  return found;
}

/**
 * Detaches `device` and waits until the kernel has let go of the backing file. If the device is
 * still held (a lazily unmounted file system), the kernel detaches it later by itself
 * (autoclear) and this returns 'deferred'.
 */
export async function detachLoop(device: string, waitMs = 5_000): Promise<'detached' | 'deferred' | 'not-attached'> {
  const name = basename(device);
  if ((await backingFile(name)) === undefined) return 'not-attached';
  const r = await runTool(['losetup', '-d', device], 20_000);
  if (r.code !== 0 && (await backingFile(name)) !== undefined && !/No such device/i.test(r.stderr)) {
    throw new HostStepError('detach loop device', `losetup -d ${device} failed`, r.stderr);
  }
  const deadline = Date.now() + waitMs;
  while ((await backingFile(name)) !== undefined) {
    if (Date.now() >= deadline) return 'deferred';
    await new Promise((res) => setTimeout(res, 20));
  }
  return 'detached';
}
