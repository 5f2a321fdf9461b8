/**
 * Plumbing of the ext4 tests: a disk's written bytes copied into a sparse image file (so e2fsck,
 * dumpe2fs, debugfs and the kernel can look at it), and e2fsck's verdict.
 */
import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basicDiskCaps, type Disk } from '../../../src/io/types.ts';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryDisk } from '../../../src/disk/memory-disk.ts';
import { mkfs } from '../../../src/fs/ext4/mkfs.ts';
import { Ext4Reader } from '../../../src/fs/ext4/reader.ts';
import { Ext4Writer } from '../../../src/fs/ext4/writer.ts';
import { applyLayerTo, type ApplyStats } from '../../../src/image/apply/index.ts';
import { Ext4Target } from '../../../src/image/apply/ext4-target.ts';
import type { Tree, TreeNode } from '../../helpers/tree.ts';
import { streamOf } from '../../image/apply/tar-build.ts';

/** Writes every allocated run of `disk` into `file` (created sparse at the disk's size). */
export async function diskToImage(disk: Disk, file: string): Promise<void> {
  if (!disk.extents) throw new Error('the disk reports no allocation map');
  const fh = await open(file, 'w');
  try {
    await fh.truncate(disk.size);
    for (let at = 0; at < disk.size;) {
      const runs = await disk.extents(at, disk.size - at);
      for (const r of runs) {
        if (!r.hole) {
          for (let off = r.offset; off < r.offset + r.length; off += 1 << 22) {
            const buf = new Uint8Array(Math.min(1 << 22, r.offset + r.length - off));
            await disk.read(buf, off);
            await fh.write(buf, 0, buf.length, off);
          }
        }
        at = r.offset + r.length;
      }
    }
  } finally {
    await fh.close();
  }
}

/** `e2fsck -fn` on the image: asserts a clean file system, showing e2fsck's report otherwise. */
export function assertFsckClean(file: string): string {
  const r = spawnSync('e2fsck', ['-fn', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `e2fsck -fn found problems (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}


export const TEST_FS = { uuid: 'da0d1c0e-0000-4000-8000-00000000ba5e', hashSeed: 'da0d1c0e-0000-4000-8000-00000000a5ed', time: 1_000_000_000 };

/** A fresh file system on a sparse in-memory disk. */
export async function freshFs(size = 1 << 30): Promise<MemoryDisk> {
  const disk = new MemoryDisk(size);
  await mkfs(disk, { size, ...TEST_FS });
  return disk;
}

/** Applies each tar in turn with the userspace ext4 target, reopening the file system per layer as conversion does. */
export async function applyExt4(disk: MemoryDisk, tars: Buffer[]): Promise<ApplyStats[]> {
  const stats = [];
  for (const tar of tars) {
    const fs = await Ext4Writer.open(disk, 'test disk');
    stats.push(await applyLayerTo(streamOf(tar), new Ext4Target(fs), { name: 'test layer' }));
  }
  return stats;
}

const TYPE: Record<string, TreeNode['type']> = {
  'file': 'file', 'directory': 'directory', 'symlink': 'symlink', 'character-device': 'char', 'block-device': 'block', 'fifo': 'fifo', 'socket': 'socket',
};

/** The tree as test/helpers/tree.ts's walkTree records a mounted one, read through the userspace reader. */
export async function readerTree(fs: Ext4Reader, opts: { exclude?: string[] } = {}): Promise<Tree> {
  const tree: Tree = new Map();
  const byIno = new Map<number, string[]>();
  const exclude = new Set(opts.exclude ?? []);
  const visit = async (path: string): Promise<void> => {
    for (const e of await fs.list(path)) {
      const rel = path === '/' ? `/${e.name}` : `${path}/${e.name}`;
      if (exclude.has(rel)) continue;
      const inode = await fs.inode(e.ino);
      const st = await fs.statInode(inode);
      const xattrs: Record<string, string> = {};
      for (const [k, v] of [...(await fs.xattrsOf(inode))].sort(([a], [b]) => (a < b ? -1 : 1))) xattrs[k] = Buffer.from(v).toString('hex');
      const node: TreeNode = {
        path: rel, type: TYPE[st.kind]!, mode: st.mode, uid: st.uid, gid: st.gid, xattrs,
        mtimeNs: (BigInt(st.mtime.sec) * 1_000_000_000n + BigInt(st.mtime.nsec)).toString(), ino: st.ino,
      };
      if (st.kind === 'file') {
        const h = createHash('sha256');
        for (let at = 0; at < st.size; at += 1 << 22) h.update(await fs.readInode(inode, at, 1 << 22));
        node.size = st.size;
        node.sha256 = h.digest('hex');
      } else if (st.kind === 'symlink') {
        node.target = await fs.readlinkInode(inode);
      } else if (st.rdev) {
        node.rdevMajor = st.rdev.major;
        node.rdevMinor = st.rdev.minor;
      }
      if (st.kind !== 'directory') byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), rel]);
      tree.set(rel, node);
      if (st.kind === 'directory') await visit(rel);
    }
  };
  await visit('/');
  for (const paths of byIno.values()) {
    if (paths.length < 2) continue;
    const group = [...paths].sort()[0]!;
    for (const p of paths) tree.get(p)!.linkGroup = group;
  }
  return tree;
}

/** Runs `fn` on the image loop-mounted read-only under `dir` (root only), unmounting after. */
export async function withLoopMount<T>(image: string, dir: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const mnt = join(dir, `mnt-${Math.random().toString(36).slice(2)}`);
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'ext4', '-o', 'loop,ro', image, mnt]);
  try {
    return await fn(mnt);
  } finally {
    try { execFileSync('umount', [mnt]); } catch { execFileSync('umount', ['-l', mnt]); }
  }
}

/** A Disk over a raw image file (what mkfs.ext4 and the kernel wrote), read and written in place. */
export class FileDisk implements Disk {
  readonly writable = true;
  readonly caps = basicDiskCaps(true);
  private constructor(private readonly fd: number, readonly size: number) {}

  static open(path: string): FileDisk {
    const fd = openSync(path, 'r+');
    return new FileDisk(fd, fstatSync(fd).size);
  }

  async read(dst: Uint8Array, offset: number): Promise<void> {
    for (let done = 0; done < dst.length;) {
      const n = readSync(this.fd, dst, done, dst.length - done, offset + done);
      if (n === 0) { dst.fill(0, done); break; }
      done += n;
    }
  }

  async write(src: Uint8Array, offset: number): Promise<void> {
    for (let done = 0; done < src.length;) done += writeSync(this.fd, src, done, src.length - done, offset + done);
  }

  async trim(): Promise<void> {}
  async flush(): Promise<void> {}
  async close(): Promise<void> { closeSync(this.fd); }
}
