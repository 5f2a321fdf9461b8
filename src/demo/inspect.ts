/**
 * Looks at the image the way a container would at start-up: walks the tree (metadata only, so
 * only inode and directory blocks are fetched), reads one file, and compares both with what the
 * demo generated — through the kernel's mount, or, where this host cannot mount, through dadi's
 * userspace ext4 reader on the same lazily attached disk. Mount operations run one at a time: the
 * NBD server answering them lives in this process and needs libuv threads of its own.
 */
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Ext4Reader } from '../fs/ext4/reader.ts';
import type { DemoContent, EntryType } from './content.ts';

export interface ListedEntry { path: string; type: EntryType | 'other'; mode: number; size: number; ino: number; nlink: number; target?: string }

export interface Inspection {
  /** Every entry under the root, sorted (lost+found's content excluded). */
  entries: ListedEntry[];
  readPath: string;
  firstLine: string;
  readBytes: number;
  /** The read file equals the generated one, byte for byte. */
  contentMatches: boolean;
  /** Differences between the mounted tree and the generated one (empty: identical). */
  problems: string[];
  listSeconds: number;
  readSeconds: number;
}

function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): ListedEntry['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
}

export async function walkTree(root: string): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, path));
      const type = typeOf(st);
      out.push({ path, type, mode: st.mode & 0o7777, size: st.size, ino: st.ino, nlink: st.nlink,
        ...(type === 'symlink' ? { target: await readlink(join(root, path)) } : {}) });
      if (type === 'directory' && path !== 'lost+found') await visit(path);
    }
  };
  await visit('');
  return out;
}

/** Compares the listing with the generated tree: paths, types, modes, sizes, link targets. */
export function compareTree(entries: ListedEntry[], content: DemoContent): string[] {
  const problems: string[] = [];
  const seen = new Map(entries.filter((e) => e.path !== 'lost+found').map((e) => [e.path, e]));
  for (const [path, want] of content.tree) {
    const got = seen.get(path);
    if (!got) { problems.push(`/${path} is missing`); continue; }
    seen.delete(path);
    if (got.type !== want.type) problems.push(`/${path} is a ${got.type}, expected a ${want.type}`);
    else if (want.type === 'file' && got.size !== want.size) problems.push(`/${path} has ${got.size} bytes, expected ${want.size}`);
    else if (want.type === 'symlink' && got.target !== want.target) problems.push(`/${path} points to ${got.target}, expected ${want.target}`);
    if (want.type !== 'symlink' && got.mode !== want.mode) problems.push(`/${path} has mode ${got.mode.toString(8)}, expected ${want.mode.toString(8)}`);
  }
  for (const path of seen.keys()) problems.push(`/${path} should not exist`);
  const [a, b] = content.hardLink;
  const la = entries.find((e) => e.path === a);
  const lb = entries.find((e) => e.path === b);
  if (la && lb && (la.ino !== lb.ino || la.nlink !== 2)) problems.push(`/${a} and /${b} are not one hard-linked inode (inodes ${la.ino}, ${lb.ino}; links ${la.nlink})`);
  return problems;
}

/** The same walk through the userspace ext4 reader. */
export async function walkImage(fs: Ext4Reader): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  const visit = async (rel: string): Promise<void> => {
    for (const e of await fs.list(`/${rel}`)) {
      if (e.name === '.' || e.name === '..') continue;
      const path = rel ? `${rel}/${e.name}` : e.name;
      const st = await fs.stat(`/${path}`);
      const type: ListedEntry['type'] = st.kind === 'file' || st.kind === 'directory' || st.kind === 'symlink' ? st.kind : 'other';
      out.push({ path, type, mode: st.mode & 0o7777, size: st.size, ino: st.ino, nlink: st.nlink,
        ...(type === 'symlink' ? { target: await fs.readlink(`/${path}`) } : {}) });
      if (type === 'directory' && path !== 'lost+found') await visit(path);
    }
  };
  await visit('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function readWhole(fs: Ext4Reader, path: string): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of fs.readFile(path)) parts.push(part);
  return Buffer.concat(parts);
}

export function inspectMount(mountPoint: string, content: DemoContent): Promise<Inspection> {
  return inspect(() => walkTree(mountPoint), () => readFile(join(mountPoint, content.readPath)), content);
}

export function inspectImage(fs: Ext4Reader, content: DemoContent): Promise<Inspection> {
  return inspect(() => walkImage(fs), () => readWhole(fs, `/${content.readPath}`), content);
}

async function inspect(walk: () => Promise<ListedEntry[]>, read: () => Promise<Buffer>, content: DemoContent): Promise<Inspection> {
  const t0 = performance.now();
  const entries = await walk();
  const t1 = performance.now();
  const problems = compareTree(entries, content);
  const data = await read();
  const t2 = performance.now();
  const contentMatches = data.equals(content.readContent);
  if (!contentMatches) problems.push(`/${content.readPath} differs from the generated content (${data.length} bytes read, ${content.readContent.length} generated)`);
  const nl = data.indexOf(0x0a);
  return {
    entries, readPath: content.readPath, firstLine: data.subarray(0, nl < 0 ? data.length : nl).toString('utf8'),
    readBytes: data.length, contentMatches, problems, listSeconds: (t1 - t0) / 1000, readSeconds: (t2 - t1) / 1000,
  };
}
