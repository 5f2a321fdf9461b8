/**
 * Ownership, permissions, xattrs and times. Order matters: chown clears setuid/setgid and file
 * capabilities, so chown comes first, then chmod, then xattrs, then times (which every earlier
 * step would bump). Directory times are deferred to the end of the layer because adding
 * children changes them.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, closeSync, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, lutimesSync } from 'node:fs';
import { promisify } from 'node:util';
import { setAttributeSync } from 'fs-xattr';
import { ApplyError } from './errors.ts';
import type { LayerEntry } from './tar-reader.ts';

const run = promisify(execFile);

/** Node's xattr binding follows symlinks; for a symlink's own xattrs, setfattr -h does not. */
async function setSymlinkXattr(path: string, name: string, value: Buffer): Promise<void> {
  await run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, '--', path]);
}

function xattrError(entry: LayerEntry, name: string, err: unknown): ApplyError {
  const why = err instanceof Error ? err.message : String(err);
  return new ApplyError(entry.name, `cannot set xattr ${JSON.stringify(name)}: ${why}`, { cause: err });
}

function ownerModeError(entry: LayerEntry, err: unknown): ApplyError {
  return new ApplyError(entry.name, `cannot set owner ${entry.uid}:${entry.gid} or mode ${entry.mode.toString(8)}: ${String(err)}`, { cause: err });
}

/**
 * The mtime as a number that libuv turns back into the same microsecond. libuv truncates the
 * nanoseconds it computes from the double (whose step at today's dates is about 240 ns) to whole
 * microseconds, so an exact x.123456 can land on .123455; aiming half a microsecond up cannot.
 * Nanoseconds below the microsecond are SubMicrosecondTimes' job.
 */
export function uvMtime(entry: LayerEntry): number {
  const ns = entry.mtimeNs;
  if (ns < 0n || ns % 1_000_000_000n === 0n) return entry.mtime;
  const us = ns / 1000n;
  return Number(us / 1_000_000n) + (Number(us % 1_000_000n) + 0.5) / 1e6;
}

/** Owner, mode and xattrs of a freshly made (or kept) node that is not a symlink; times are set by the caller. */
export function applyOwnerModeXattrs(path: string, entry: LayerEntry): void {
  try {
    lchownSync(path, entry.uid, entry.gid);
    chmodSync(path, entry.mode);
  } catch (err) {
    throw ownerModeError(entry, err);
  }
  for (const [name, value] of entry.xattrs) {
    try {
      setAttributeSync(path, name, value);
    } catch (err) {
      throw xattrError(entry, name, err);
    }
  }
}

/** A symlink's own owner and xattrs (a symlink has no mode of its own). */
export async function applySymlinkOwnerXattrs(path: string, entry: LayerEntry): Promise<void> {
  try {
    lchownSync(path, entry.uid, entry.gid);
  } catch (err) {
    throw ownerModeError(entry, err);
  }
  for (const [name, value] of entry.xattrs) {
    try {
      await setSymlinkXattr(path, name, value);
    } catch (err) {
      throw xattrError(entry, name, err);
    }
  }
}

/**
 * Owner, mode and times of a regular file through its open descriptor, then closes it: the
 * descriptor names this file whatever happens to the path. Always closes.
 */
export function finishFile(fd: number, entry: LayerEntry): void {
  try {
    fchownSync(fd, entry.uid, entry.gid);
    fchmodSync(fd, entry.mode);
    futimesSync(fd, entry.atime, uvMtime(entry));
  } catch (err) {
    closeSync(fd);
    throw new ApplyError(entry.name, `cannot set owner ${entry.uid}:${entry.gid}, mode ${entry.mode.toString(8)} or times: ${String(err)}`, { cause: err });
  }
  closeSync(fd);
}

export function applyTimes(path: string, entry: LayerEntry): void {
  try {
    lutimesSync(path, entry.atime, uvMtime(entry));
  } catch (err) {
    throw new ApplyError(entry.name, `cannot set times: ${String(err)}`, { cause: err });
  }
}

interface PendingDir { name: string; atime: number; mtime: number; ino: number }

/** Directory times recorded during the layer and set once all children exist. */
export class DirTimes {
  private readonly pending = new Map<string, PendingDir>();

  record(rel: string, entry: LayerEntry, ino: number): void {
    this.pending.set(rel, { name: entry.name, atime: entry.atime, mtime: uvMtime(entry), ino });
  }

  /** Drops records for `rel` and everything under it (it was removed or replaced). */
  forget(rel: string): void {
    if (this.pending.size === 0) return;
    if (rel === '') { this.pending.clear(); return; }
    const prefix = `${rel}/`;
    for (const key of this.pending.keys()) if (key === rel || key.startsWith(prefix)) this.pending.delete(key);
  }

  apply(abs: (rel: string) => string): void {
    for (const [rel, d] of this.pending) {
      const path = abs(rel);
      let st;
      try { st = lstatSync(path); } catch { st = null; }
      // Gone or replaced since (forget() should have dropped it): nothing of this entry to date.
      if (st === null || !st.isDirectory() || st.ino !== d.ino) continue;
      try {
        lutimesSync(path, d.atime, d.mtime);
      } catch (err) {
        throw new ApplyError(d.name, `cannot set directory times: ${String(err)}`, { cause: err });
      }
    }
    this.pending.clear();
  }
}

/** Sets exact mtimes from NUL-separated "ns path" pairs on stdin, never following a final symlink. */
const PY_SET_MTIMES = `
import os, sys
d = sys.stdin.buffer.read().split(b"\\0")
for i in range(0, len(d) - 1, 2):
    p = d[i + 1]
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        continue
    os.utime(p, ns=(st.st_atime_ns, int(d[i])), follow_symlinks=False)
`;

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs `cmd` with `input` on stdin; rejects with its stderr on failure. */
function runWithInput(cmd: string, args: string[], input: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}: ${err.trim()}`))));
    child.stdin.on('error', () => {}); // a failure shows in the exit code
    child.stdin.end(input);
  });
}

/** Python commands that failed once: later layers go straight to the shell. */
const pythonFailed = new Set<string>();

/**
 * Node sets times through libuv, which rounds to microseconds; GNU tar and containerd keep a PAX
 * mtime's nanoseconds. The entries whose mtime has digits below the microsecond are recorded and
 * dated again at the end of the layer (after the directory times) in one helper process:
 * python3's os.utime(ns=...), or else one shell running `touch -h` per path.
 */
export class SubMicrosecondTimes {
  private readonly pending = new Map<string, { name: string; mtimeNs: bigint }>();

  /** Called for every entry made at `rel`: the latest one decides. Hard links keep their target's time. */
  note(rel: string, entry: LayerEntry): void {
    if (entry.type !== 'hardlink' && entry.mtimeNs >= 0n && entry.mtimeNs % 1000n !== 0n) this.pending.set(rel, { name: entry.name, mtimeNs: entry.mtimeNs });
    else this.pending.delete(rel);
  }

  /** `reach(rel)`: the absolute path when every parent of `rel` is still a real directory, else null. */
  async apply(reach: (rel: string) => string | null): Promise<void> {
    if (this.pending.size === 0) return;
    const todo: Array<[string, bigint]> = [];
    for (const [rel] of this.pending) {
      // Never through a symlink a later entry may have put among the parents; a path removed
      // since is skipped.
      const abs = reach(rel);
      if (abs !== null) todo.push([abs, this.pending.get(rel)!.mtimeNs]);
    }
    const first = this.pending.values().next().value!.name;
    this.pending.clear();
    // python3, or $DADI_PYTHON (which the tests point elsewhere to take the shell path), tried
    // directly rather than probed first (a probe costs a whole interpreter start per process).
    // Should it fail, even midway, the shell sets every time again: touch -h is idempotent.
    const py = process.env.DADI_PYTHON ?? 'python3';
    if (!pythonFailed.has(py)) {
      try {
        await runWithInput(py, ['-c', PY_SET_MTIMES], Buffer.concat(todo.flatMap(([path, ns]) => [Buffer.from(`${ns}\0`), Buffer.from(path), Buffer.from('\0')])));
        return;
      } catch {
        pythonFailed.add(py);
      }
    }
    const stamp = (ns: bigint) => `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
    try {
      await runWithInput('sh', ['-e', '-s'], Buffer.from(todo.map(([path, ns]) => `touch -h -c -m -d ${stamp(ns)} -- ${shQuote(path)}\n`).join('')));
    } catch (err) {
      throw new ApplyError(first, `cannot set the nanoseconds of ${todo.length} mtimes of this layer: ${String(err)}`, { cause: err });
    }
  }
}
