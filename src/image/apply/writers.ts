/**
 * Makes one node per layer entry. An existing path of a different type is removed first
 * (a directory with its whole tree); a directory over a directory keeps its contents and only
 * takes the new metadata. Files are created with O_EXCL|O_NOFOLLOW after the old path is gone,
 * so a symlink left at the final component is never followed either.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, linkSync, lstatSync, mkdirSync, openSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { ApplyError, errnoCode } from './errors.ts';
import { applyOwnerModeXattrs, applySymlinkOwnerXattrs, applyTimes, DirTimes, finishFile, SubMicrosecondTimes } from './metadata.ts';
import { cleanEntryPath, type SafeRoot } from './paths.ts';
import type { EntryType, LayerEntry } from './tar-reader.ts';
import { isAufsMeta, isWhiteout, LayerPaths, Whiteouts } from './whiteouts.ts';

const run = promisify(execFile);

export interface ApplyStats {
  entries: Record<EntryType, number>;
  /** Bytes of regular-file content written. */
  bytesWritten: number;
  /** `.wh.NAME` entries applied (each hides one name, file or tree). */
  whiteouts: number;
  /** `.wh..wh..opq` entries applied. */
  opaqueDirs: number;
  /** AUFS metadata entries (`.wh..wh.*` other than the opaque marker) skipped, as docker does. */
  ignored: number;
}

export function emptyStats(): ApplyStats {
  return {
    entries: { 'file': 0, 'directory': 0, 'symlink': 0, 'hardlink': 0, 'character-device': 0, 'block-device': 0, 'fifo': 0 },
    bytesWritten: 0,
    whiteouts: 0,
    opaqueDirs: 0,
    ignored: 0,
  };
}

async function drain(body: Readable): Promise<void> {
  for await (const _chunk of body) { /* discard: tar-stream needs every body read */ }
}

function lstatOrNull(path: string, entry: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw new ApplyError(entry, `cannot inspect ${path}: ${String(err)}`, { cause: err });
  }
}

/**
 * File-system calls are synchronous: each is a few microseconds against the page cache, while a
 * round trip through libuv's thread pool costs several times that and, on a loaded 2-core
 * machine, competes with the gunzip stream for the same threads. Only reading the tar awaits.
 */
export class LayerApplier {
  readonly stats = emptyStats();
  private readonly mine = new LayerPaths();
  private readonly dirTimes = new DirTimes();
  private readonly exactTimes = new SubMicrosecondTimes();
  private readonly whiteouts: Whiteouts;

  constructor(private readonly root: SafeRoot) {
    this.whiteouts = new Whiteouts(root, this.mine, this.dirTimes);
  }

  async apply(entry: LayerEntry, body: Readable): Promise<void> {
    const rel = cleanEntryPath(entry.name);
    if (entry.type !== 'file') await drain(body);
    if (isAufsMeta(rel)) {
      // AUFS bookkeeping (.wh..wh.plnk/, .wh..wh.aufs, ...) that old docker layers carry: not content.
      if (entry.type === 'file') await drain(body);
      this.stats.ignored++;
      return;
    }
    if (rel !== '' && isWhiteout(rel)) {
      if (entry.type === 'file') await drain(body);
      const kind = await this.whiteouts.apply(rel, entry.name);
      if (kind === 'opaque') this.stats.opaqueDirs++; else this.stats.whiteouts++;
      return;
    }
    if (rel === '') {
      if (entry.type !== 'directory') throw new ApplyError(entry.name, `names the root directory but is a ${entry.type}`);
      await this.directory('', entry);
      this.exactTimes.note('', entry);
      this.stats.entries.directory++;
      return;
    }
    // A hard link's target is checked before anything is made for the link itself.
    const linkTarget = entry.type === 'hardlink' ? await this.hardlinkTarget(entry) : '';
    this.root.checkParents(rel, entry.name, { create: true, onCreate: (p) => this.mine.add(p) });
    this.mine.add(rel);
    const path = this.root.abs(rel);
    switch (entry.type) {
      case 'file': await this.file(rel, path, entry, body); break;
      case 'directory': await this.directory(rel, entry); break;
      case 'symlink': await this.symlink(rel, path, entry); break;
      case 'hardlink': await this.hardlink(rel, path, entry, linkTarget); break;
      case 'character-device': case 'block-device': case 'fifo': await this.special(rel, path, entry); break;
    }
    this.exactTimes.note(rel, entry);
    this.stats.entries[entry.type]++;
  }

  /** Sets the deferred directory times; call once after the last entry. */
  async finish(): Promise<void> {
    this.dirTimes.apply((rel) => this.root.abs(rel));
    await this.exactTimes.apply(this.root);
  }

  /** After a failure: nothing runs in the background any more, so nothing to wait for. */
  async settle(): Promise<void> {}

  /** Clears `rel` for a new node; keeps (and returns) an existing directory when `keepDir`. */
  private async clear(rel: string, path: string, entry: LayerEntry, keepDir: boolean): Promise<Stats | null> {
    const st = lstatOrNull(path, entry.name);
    if (st === null) return null;
    if (st.isDirectory()) {
      if (keepDir) return st;
      await this.whiteouts.removeTree(rel, entry.name);
      return null;
    }
    try {
      unlinkSync(path);
    } catch (err) {
      throw new ApplyError(entry.name, `cannot replace the existing ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
    return null;
  }

  /**
   * Creates `path` with `make`, which must fail with EEXIST when something is there; only then
   * is the old node inspected and cleared (most paths are new, so this saves an lstat each).
   */
  private async create<T>(rel: string, path: string, entry: LayerEntry, what: string, make: () => T): Promise<T> {
    try {
      return make();
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw new ApplyError(entry.name, `cannot create ${what}: ${String(err)}`, { cause: err });
    }
    await this.clear(rel, path, entry, false);
    try {
      return make();
    } catch (err) {
      throw new ApplyError(entry.name, `cannot create ${what}: ${String(err)}`, { cause: err });
    }
  }

  private async file(rel: string, path: string, entry: LayerEntry, body: Readable): Promise<void> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    let fd: number;
    try {
      fd = await this.create(rel, path, entry, 'file', () => openSync(path, flags, 0o600));
    } catch (err) {
      await drain(body).catch(() => {});
      throw err;
    }
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
    this.stats.bytesWritten += written;
    if (entry.xattrs.size === 0) {
      finishFile(fd, entry);
      return;
    }
    // fs-xattr works on paths: the path still names this file, as nothing ran in between.
    closeSync(fd);
    applyOwnerModeXattrs(path, entry);
    applyTimes(path, entry);
  }

  private async directory(rel: string, entry: LayerEntry): Promise<void> {
    const path = this.root.abs(rel);
    let st: Stats | null = null;
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw new ApplyError(entry.name, `cannot create directory: ${String(err)}`, { cause: err });
      st = await this.clear(rel, path, entry, true);
      if (st === null) {
        try {
          mkdirSync(path, { mode: 0o700 });
        } catch (err2) {
          throw new ApplyError(entry.name, `cannot create directory: ${String(err2)}`, { cause: err2 });
        }
      }
    }
    st ??= lstatSync(path);
    this.root.noteDir(rel);
    applyOwnerModeXattrs(path, entry);
    this.dirTimes.record(rel, entry, st.ino);
  }

  private async symlink(rel: string, path: string, entry: LayerEntry): Promise<void> {
    await this.create(rel, path, entry, 'symlink', () => symlinkSync(entry.linkname, path));
    await applySymlinkOwnerXattrs(path, entry);
    applyTimes(path, entry);
  }

  /** The root-relative path of an existing, non-directory hard-link target reached without symlinks. */
  private async hardlinkTarget(entry: LayerEntry): Promise<string> {
    if (entry.linkname === '') throw new ApplyError(entry.name, 'hard link without a target');
    const targetRel = cleanEntryPath(entry.linkname, entry.name, 'hard link target');
    if (targetRel === '') throw new ApplyError(entry.name, 'hard link target is the root directory');
    if (targetRel.startsWith(`${cleanEntryPath(entry.name)}/`)) {
      throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} lies inside the path the link would replace`);
    }
    const exists = this.root.checkParents(targetRel, entry.name, { create: false, what: 'hard link target' });
    const target = exists ? lstatOrNull(this.root.abs(targetRel), entry.name) : null;
    if (target === null) throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} does not exist`);
    if (target.isDirectory()) throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} is a directory`);
    return targetRel;
  }

  /** Hard links share the target's inode, so the entry's own metadata is not applied (as GNU tar). */
  private async hardlink(rel: string, path: string, entry: LayerEntry, targetRel: string): Promise<void> {
    if (targetRel === rel) return;
    await this.create(rel, path, entry, `a link to ${JSON.stringify(entry.linkname)}`, () => linkSync(this.root.abs(targetRel), path));
  }

  /** Node has no mknod/mkfifo; the coreutils commands do it. */
  private async special(rel: string, path: string, entry: LayerEntry): Promise<void> {
    // The commands report "File exists" in text, not as EEXIST, so clear first.
    await this.clear(rel, path, entry, false);
    try {
      if (entry.type === 'fifo') await run('mkfifo', ['-m', '0600', path]);
      else await run('mknod', ['-m', '0600', path, entry.type === 'character-device' ? 'c' : 'b', String(entry.devmajor), String(entry.devminor)]);
    } catch (err) {
      throw new ApplyError(entry.name, `cannot create ${entry.type}: ${String(err)}`, { cause: err });
    }
    applyOwnerModeXattrs(path, entry);
    applyTimes(path, entry);
  }
}
