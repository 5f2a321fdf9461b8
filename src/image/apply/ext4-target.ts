/**
 * Applying into dadi's userspace ext4 (src/fs/ext4) on the stacked image's disk: no kernel, no
 * mount, no privilege. Metadata goes straight into each inode (owner, mode, nanosecond times,
 * xattrs), so nothing is deferred; a directory keeps the times its own entry gave it even as
 * children arrive, and implied parents are dated with the entry that implied them, so the result
 * depends only on the layers.
 */
import type { Readable } from 'node:stream';
import { isDir, isSymlink, isReg } from '../../fs/ext4/inode.ts';
import type { Timestamp } from '../../fs/ext4/inode.ts';
import type { Ext4Writer, NodeAttrs } from '../../fs/ext4/writer.ts';
import { ApplyError, errnoCode } from './errors.ts';
import type { ApplyTarget, TargetNode } from './target.ts';
import type { LayerEntry } from './tar-reader.ts';

const NS = 1_000_000_000n;

export function timestampOfNs(ns: bigint): Timestamp {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) { nsec += NS; sec -= 1n; }
  return { sec: Number(sec), nsec: Number(nsec) };
}

function timestampOfSeconds(s: number): Timestamp {
  const sec = Math.floor(s);
  return { sec, nsec: Math.min(999_999_999, Math.round((s - sec) * 1e9)) };
}

function attrsOf(entry: LayerEntry): NodeAttrs {
  const mtime = timestampOfNs(entry.mtimeNs);
  const atime = entry.atime === entry.mtime ? mtime : timestampOfSeconds(entry.atime);
  return { mode: entry.mode, uid: entry.uid, gid: entry.gid, atime, mtime, xattrs: entry.xattrs };
}

export class Ext4Target implements ApplyTarget {
  constructor(private readonly fs: Ext4Writer) {}

  get label(): string { return this.fs.name; }

  /** Runs a writer call; EEXIST passes as it is, anything else becomes an ApplyError naming the entry. */
  private async run<T>(entry: string, what: string, fn: () => Promise<T>, passThrough?: (err: unknown) => boolean): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (errnoCode(err) === 'EEXIST' || passThrough?.(err)) throw err;
      const why = err instanceof Error ? err.message : String(err);
      throw new ApplyError(entry, `cannot ${what}: ${why}`, { cause: err });
    }
  }

  async stat(rel: string, entry: string): Promise<TargetNode | null> {
    // A missing parent means nothing is there, as lstat says ENOENT.
    const inode = await this.run(entry, `inspect ${JSON.stringify(rel)}`,
      () => this.fs.lookup(rel).catch((err: unknown) => { if (errnoCode(err) === 'ENOENT') return null; throw err; }));
    if (!inode) return null;
    const type = isDir(inode) ? 'directory' : isSymlink(inode) ? 'symlink' : isReg(inode) ? 'file' : 'other';
    return { type, id: inode.ino };
  }

  list(rel: string, entry: string): Promise<string[]> {
    return this.run(entry, `list ${JSON.stringify(rel || '/')}`, () => this.fs.childNames(rel));
  }

  remove(rel: string, entry: string): Promise<void> {
    return this.run(entry, `remove ${JSON.stringify(rel)}`, () => this.fs.remove(rel));
  }

  makeParent(rel: string, entry: LayerEntry): Promise<void> {
    const { mtime } = attrsOf(entry);
    return this.run(entry.name, `create the parent directory ${JSON.stringify(rel)}`,
      () => this.fs.mkdir(rel, { mode: 0o755, uid: 0, gid: 0, atime: mtime, mtime, xattrs: new Map() }));
  }

  async writeFile(rel: string, entry: LayerEntry, body: Readable): Promise<number> {
    // Errors of the body (a truncated tar) pass unchanged: the caller makes them FormatErrors.
    let bodyError: unknown;
    const chunks = async function* (): AsyncGenerator<Uint8Array> {
      try {
        for await (const c of body as AsyncIterable<Buffer>) yield c;
      } catch (err) {
        bodyError = err;
        throw err;
      }
    };
    return this.run(entry.name, 'create file', () => this.fs.writeFile(rel, attrsOf(entry), entry.size, chunks()), (err) => err === bodyError);
  }

  mkdir(rel: string, entry: LayerEntry): Promise<void> {
    return this.run(entry.name, 'create directory', () => this.fs.mkdir(rel, attrsOf(entry)));
  }

  updateDirectory(rel: string, entry: LayerEntry): Promise<void> {
    return this.run(entry.name, 'set the directory\'s metadata', () => this.fs.setAttrs(rel, attrsOf(entry)));
  }

  symlink(rel: string, entry: LayerEntry): Promise<void> {
    return this.run(entry.name, 'create symlink', () => this.fs.symlink(rel, attrsOf(entry), entry.linkname));
  }

  hardlink(rel: string, targetRel: string, entry: LayerEntry): Promise<void> {
    return this.run(entry.name, `create a link to ${JSON.stringify(entry.linkname)}`, () => this.fs.link(rel, targetRel));
  }

  special(rel: string, entry: LayerEntry): Promise<void> {
    const kind = entry.type as 'character-device' | 'block-device' | 'fifo';
    return this.run(entry.name, `create ${kind}`, () => this.fs.mknod(rel, attrsOf(entry), kind, entry.devmajor, entry.devminor));
  }

  /** Refused entries fail before they change anything, so what came before them is written out whole. */
  async settle(): Promise<void> {
    await this.fs.flush().catch(() => undefined);
  }

  async finish(): Promise<void> {
    await this.run('', 'write the file system\'s metadata', () => this.fs.flush());
  }
}
