/**
 * Applying into a host directory (the kernel path: the stacked image's ext4 mounted by the
 * kernel). File-system calls are synchronous: each is a few microseconds against the page cache,
 * while a round trip through libuv's thread pool costs several times that and, on a loaded 2-core
 * machine, competes with the gunzip stream for the same threads. Directory times are deferred to
 * the end of the layer (adding children changes them), and mtimes finer than libuv's microsecond
 * are set again at the end (metadata.ts).
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, linkSync, lstatSync, mkdirSync, openSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { ApplyError, errnoCode } from './errors.ts';
import { applyOwnerModeXattrs, applySymlinkOwnerXattrs, applyTimes, DirTimes, finishFile, SubMicrosecondTimes } from './metadata.ts';
import type { ApplyTarget, TargetNode } from './target.ts';
import type { LayerEntry } from './tar-reader.ts';

const run = promisify(execFile);

export class HostTarget implements ApplyTarget {
  private readonly dirTimes = new DirTimes();
  private readonly exactTimes = new SubMicrosecondTimes();

  constructor(readonly dir: string) {}

  get label(): string { return this.dir; }

  private abs(rel: string): string {
    return rel === '' ? this.dir : join(this.dir, rel);
  }

  async stat(rel: string, entry: string): Promise<TargetNode | null> {
    let st;
    try {
      st = lstatSync(this.abs(rel));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw new ApplyError(entry, `cannot inspect ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
    const type = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    return { type, id: st.ino };
  }

  async list(rel: string, entry: string): Promise<string[]> {
    try {
      return readdirSync(this.abs(rel));
    } catch (err) {
      throw new ApplyError(entry, `cannot list ${JSON.stringify(rel || '/')}: ${String(err)}`, { cause: err });
    }
  }

  async remove(rel: string, entry: string): Promise<void> {
    const path = this.abs(rel);
    try {
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) return;
      if (st.isDirectory()) {
        rmSync(path, { recursive: true, force: true });
        this.dirTimes.forget(rel);
      } else {
        unlinkSync(path);
      }
    } catch (err) {
      throw new ApplyError(entry, `cannot remove ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
  }

  async makeParent(rel: string, entry: LayerEntry): Promise<void> {
    try {
      mkdirSync(this.abs(rel), { mode: 0o755 });
    } catch (err) {
      throw new ApplyError(entry.name, `cannot create the parent directory ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
  }

  /** Runs a syscall that makes `rel`; EEXIST passes as it is (the applier clears and retries). */
  private make<T>(entry: LayerEntry, what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') throw err;
      throw new ApplyError(entry.name, `cannot create ${what}: ${String(err)}`, { cause: err });
    }
  }

  async writeFile(rel: string, entry: LayerEntry, body: Readable): Promise<number> {
    const path = this.abs(rel);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const fd = this.make(entry, 'file', () => openSync(path, flags, 0o600));
    let written = 0;
    try {
      // Reading errors (a truncated tar) propagate as they are; the caller maps them to a FormatError.
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let done = 0;
        while (done < chunk.length) {
          try {
            done += writeSync(fd, chunk, done, chunk.length - done);
          } catch (err) {
            throw new ApplyError(entry.name, `cannot write file data: ${String(err)}`, { cause: err });
          }
        }
        written += chunk.length;
      }
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (entry.xattrs.size === 0) {
      finishFile(fd, entry);
    } else {
      // fs-xattr works on paths: the path still names this file, as nothing ran in between.
      closeSync(fd);
      applyOwnerModeXattrs(path, entry);
      applyTimes(path, entry);
    }
    this.exactTimes.note(rel, entry);
    return written;
  }

  async mkdir(rel: string, entry: LayerEntry): Promise<void> {
    this.make(entry, 'directory', () => mkdirSync(this.abs(rel), { mode: 0o700 }));
    await this.updateDirectory(rel, entry);
  }

  async updateDirectory(rel: string, entry: LayerEntry): Promise<void> {
    const path = this.abs(rel);
    const st = lstatSync(path);
    applyOwnerModeXattrs(path, entry);
    this.dirTimes.record(rel, entry, st.ino);
    this.exactTimes.note(rel, entry);
  }

  async symlink(rel: string, entry: LayerEntry): Promise<void> {
    const path = this.abs(rel);
    this.make(entry, 'symlink', () => symlinkSync(entry.linkname, path));
    await applySymlinkOwnerXattrs(path, entry);
    applyTimes(path, entry);
    this.exactTimes.note(rel, entry);
  }

  /** Hard links share the target's inode, so the entry's own metadata is not applied (as GNU tar). */
  async hardlink(rel: string, targetRel: string, entry: LayerEntry): Promise<void> {
    this.make(entry, `a link to ${JSON.stringify(entry.linkname)}`, () => linkSync(this.abs(targetRel), this.abs(rel)));
    this.exactTimes.note(rel, entry);
  }

  /** Node has no mknod/mkfifo; the coreutils commands do it (the applier cleared the path). */
  async special(rel: string, entry: LayerEntry): Promise<void> {
    const path = this.abs(rel);
    try {
      if (entry.type === 'fifo') await run('mkfifo', ['-m', '0600', path]);
      else await run('mknod', ['-m', '0600', path, entry.type === 'character-device' ? 'c' : 'b', String(entry.devmajor), String(entry.devminor)]);
    } catch (err) {
      throw new ApplyError(entry.name, `cannot create ${entry.type}: ${String(err)}`, { cause: err });
    }
    applyOwnerModeXattrs(path, entry);
    applyTimes(path, entry);
    this.exactTimes.note(rel, entry);
  }

  /** Whether every parent of `rel` is still a real directory (none replaced by a symlink since). */
  private reach(rel: string): string | null {
    const parts = rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`;
      const st = lstatSync(this.abs(prefix), { throwIfNoEntry: false });
      if (!st || !st.isDirectory()) return null;
    }
    return this.abs(rel);
  }

  async finish(): Promise<void> {
    this.dirTimes.apply((rel) => this.abs(rel));
    await this.exactTimes.apply((rel) => this.reach(rel));
  }
}
