/**
 * Mounting and unmounting the file system on an attached block device. Options follow
 * overlaybd's defaults: ext4 gets `discard` when writable so deletions reach the writable
 * layer as trims; EROFS is always read-only.
 */
import { detectFsType, type FsType } from './fs-type.ts';
import { mountAt } from './mount-table.ts';
import { HostStepError, runStep, runTool } from './run-tool.ts';
import type { StepTimes } from '../util/steps.ts';

export interface MountFsOptions { readOnly: boolean; extraOptions?: string[] }

export function mountOptions(fsType: FsType, opts: MountFsOptions): string[] {
  const o = fsType === 'erofs' || opts.readOnly ? ['ro'] : ['rw', 'discard'];
  return [...o, ...(opts.extraOptions ?? [])];
}

/** Detects the file system on `device` and mounts it on `dir`; refuses a device with none. */
export async function mountFs(device: string, dir: string, opts: MountFsOptions, steps?: StepTimes, known?: FsType): Promise<FsType> {
  const t = performance.now();
  const fsType = known ?? await detectFsType(device).catch((err: Error) => {
    throw new HostStepError('detect file system', `cannot read ${device}: ${err.message}`);
  });
  if (!fsType) {
    throw new HostStepError('detect file system', `${device} holds no known file system (no ext4 magic 0xEF53 at byte 1080, no EROFS magic 0xE0F5E1E2 at byte 1024)`);
  }
  steps?.add('detectFs', performance.now() - t);
  const m = performance.now();
  await runStep('mount', ['mount', '-t', fsType, '-o', mountOptions(fsType, opts).join(','), device, dir]);
  steps?.add('mount', performance.now() - m);
  return fsType;
}

/**
 * Unmounts `dir` if something is mounted there. A busy or hung file system is detached lazily
 * only when `lazyIfStuck` (the server is gone, or the user forced it); otherwise the busy error
 * is reported and nothing underneath is torn down.
 */
export async function unmountFs(dir: string, lazyIfStuck: boolean): Promise<'not-mounted' | 'unmounted' | 'lazy'> {
  if (!(await mountAt(dir))) return 'not-mounted';
  const r = await runTool(['umount', dir], 20_000);
  if (r.code === 0 && !r.timedOut) return 'unmounted';
  if (!lazyIfStuck) {
    throw new HostStepError('unmount', `umount ${dir} failed${r.timedOut ? ' (timed out)' : ''}; close what uses it or pass --force`, r.stderr);
  }
  await runStep('unmount (lazy)', ['umount', '-l', dir]);
  return 'lazy';
}
