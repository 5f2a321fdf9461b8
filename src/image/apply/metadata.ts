/**
 * Ownership, permissions, xattrs and times. Order matters: chown clears setuid/setgid and file
 * capabilities, so chown comes first, then chmod, then xattrs, then times (which every earlier
 * step would bump). Directory times are deferred to the end of the layer because adding
 * children changes them.
 */
import { execFile } from 'node:child_process';
import { chmod, lchown, lstat, lutimes, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { setAttribute } from 'fs-xattr';
import { ApplyError } from './errors.ts';
import type { LayerEntry } from './tar-reader.ts';

const run = promisify(execFile);

/** Node's xattr binding follows symlinks; for a symlink's own xattrs, setfattr -h does not. */
async function setSymlinkXattr(path: string, name: string, value: Buffer): Promise<void> {
  await run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, '--', path]);
}

export async function applyXattrs(path: string, entry: LayerEntry, isSymlink: boolean): Promise<void> {
  for (const [name, value] of entry.xattrs) {
    try {
      if (isSymlink) await setSymlinkXattr(path, name, value);
      else await setAttribute(path, name, value);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ApplyError(entry.name, `cannot set xattr ${JSON.stringify(name)}: ${why}`, { cause: err });
    }
  }
}

/** Owner, mode and xattrs of a freshly made (or kept) node; times are set by the caller. */
export async function applyOwnerModeXattrs(path: string, entry: LayerEntry, isSymlink: boolean): Promise<void> {
  try {
    await lchown(path, entry.uid, entry.gid);
    if (!isSymlink) await chmod(path, entry.mode);
  } catch (err) {
    throw new ApplyError(entry.name, `cannot set owner ${entry.uid}:${entry.gid} or mode ${entry.mode.toString(8)}: ${String(err)}`, { cause: err });
  }
  await applyXattrs(path, entry, isSymlink);
}

/**
 * Owner, mode and times of a regular file through its open handle, then closes it. Handle-based,
 * so it stays correct even if a later entry has meanwhile replaced the path. Always closes.
 */
export async function finishFile(fh: FileHandle, entry: LayerEntry): Promise<void> {
  try {
    await fh.chown(entry.uid, entry.gid);
    await fh.chmod(entry.mode);
    await fh.utimes(entry.atime, entry.mtime);
  } catch (err) {
    await fh.close().catch(() => {});
    throw new ApplyError(entry.name, `cannot set owner ${entry.uid}:${entry.gid}, mode ${entry.mode.toString(8)} or times: ${String(err)}`, { cause: err });
  }
  await fh.close();
}

export async function applyTimes(path: string, entry: LayerEntry): Promise<void> {
  try {
    await lutimes(path, entry.atime, entry.mtime);
  } catch (err) {
    throw new ApplyError(entry.name, `cannot set times: ${String(err)}`, { cause: err });
  }
}

interface PendingDir { name: string; atime: number; mtime: number; ino: number }

/** Directory times recorded during the layer and set once all children exist. */
export class DirTimes {
  private readonly pending = new Map<string, PendingDir>();

  record(rel: string, entry: LayerEntry, ino: number): void {
    this.pending.set(rel, { name: entry.name, atime: entry.atime, mtime: entry.mtime, ino });
  }

  /** Drops records for `rel` and everything under it (it was removed or replaced). */
  forget(rel: string): void {
    if (this.pending.size === 0) return;
    if (rel === '') { this.pending.clear(); return; }
    const prefix = `${rel}/`;
    for (const key of this.pending.keys()) if (key === rel || key.startsWith(prefix)) this.pending.delete(key);
  }

  async apply(abs: (rel: string) => string): Promise<void> {
    for (const [rel, d] of this.pending) {
      const path = abs(rel);
      const st = await lstat(path).catch(() => null);
      // Gone or replaced since (forget() should have dropped it): nothing of this entry to date.
      if (st === null || !st.isDirectory() || st.ino !== d.ino) continue;
      try {
        await lutimes(path, d.atime, d.mtime);
      } catch (err) {
        throw new ApplyError(d.name, `cannot set directory times: ${String(err)}`, { cause: err });
      }
    }
    this.pending.clear();
  }
}
