/**
 * Walks a directory into a comparable record of every node (type, permission bits including
 * setuid/setgid/sticky, owner, size, content hash, symlink target, hard-link group, xattrs, device
 * numbers, mtime), so a mounted image can be compared with a reference extraction.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { getAttribute, listAttributes } from 'fs-xattr';

export type NodeType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface TreeNode {
  /** Root-relative, with a leading '/'; the root itself is '/'. */
  path: string;
  type: NodeType;
  /** Permission bits with setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files only. */
  size?: number;
  sha256?: string;
  /** Symlinks only. */
  target?: string;
  /** Non-directories sharing an inode with another path of the tree: the smallest such path. */
  linkGroup?: string;
  /** name → hex value. */
  xattrs: Record<string, string>;
  /** Character and block devices only. */
  rdevMajor?: number;
  rdevMinor?: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** Not compared (differs between trees); useful for checks within one tree. */
  ino: number;
}

export type Tree = Map<string, TreeNode>;

export interface WalkOptions {
  /** Root-relative paths (leading '/') to leave out with everything under them, e.g. '/lost+found'. */
  exclude?: string[];
  /** Include the root directory itself as '/'. Default false. */
  includeRoot?: boolean;
}

function typeOf(st: import('node:fs').BigIntStats): NodeType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux dev_t encoding (glibc gnu_dev_major/minor). */
export function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
export function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function fileXattrs(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await listAttributes(path)).sort()) out[name] = (await getAttribute(path, name)).toString('hex');
  return out;
}

/** getfattr's name quoting: octal escapes for odd bytes, doubled backslash. */
function unquote(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && raw[i + 1] === 0x5c) { bytes.push(0x5c); i++; continue; }
    if (raw[i] === 0x5c && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8)); i += 3; continue;
    }
    bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The symlinks' own xattrs (Node's binding follows symlinks), in one getfattr -h run per batch. */
function symlinkXattrs(paths: string[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (let i = 0; i < paths.length; i += 200) {
    const batch = paths.slice(i, i + 200);
    const text = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', ...batch], { encoding: 'utf8' });
    let current: Record<string, string> | null = null;
    for (const line of text.split('\n')) {
      if (line.startsWith('# file: ')) {
        current = {};
        out.set(unquote(line.slice(8)), current);
      } else if (current && line.includes('=')) {
        const eq = line.indexOf('=');
        const value = line.slice(eq + 1);
        current[unquote(line.slice(0, eq))] = value.startsWith('0x') ? value.slice(2) : Buffer.from(value.replace(/^"|"$/g, '')).toString('hex');
      }
    }
  }
  return out;
}

export async function walkTree(root: string, opts: WalkOptions = {}): Promise<Tree> {
  const exclude = new Set(opts.exclude ?? []);
  const tree: Tree = new Map();
  const symlinks: Array<[string, string]> = [];
  const byIno = new Map<bigint, string[]>();

  async function visit(abs: string, rel: string): Promise<void> {
    const st = await lstat(abs, { bigint: true });
    const type = typeOf(st);
    const node: TreeNode = {
      path: rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      xattrs: {},
      mtimeNs: st.mtimeNs.toString(),
      ino: Number(st.ino),
    };
    if (type === 'file') {
      node.size = Number(st.size);
      node.sha256 = await sha256File(abs);
    } else if (type === 'symlink') {
      node.target = await readlink(abs);
      symlinks.push([abs, rel]);
    } else if (type === 'char' || type === 'block') {
      node.rdevMajor = devMajor(st.rdev);
      node.rdevMinor = devMinor(st.rdev);
    }
    if (type !== 'symlink') node.xattrs = await fileXattrs(abs);
    if (type !== 'directory') byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), rel]);
    if (rel !== '/' || opts.includeRoot) tree.set(rel, node);
    if (type === 'directory') {
      for (const name of (await readdir(abs)).sort()) {
        const childRel = rel === '/' ? `/${name}` : `${rel}/${name}`;
        if (!exclude.has(childRel)) await visit(join(abs, name), childRel);
      }
    }
  }

  await visit(root, '/');
  const linkXattrs = symlinkXattrs(symlinks.map(([abs]) => abs));
  for (const [abs, rel] of symlinks) tree.get(rel)!.xattrs = linkXattrs.get(abs) ?? {};
  for (const paths of byIno.values()) {
    if (paths.length < 2) continue;
    const group = [...paths].sort()[0]!;
    for (const p of paths) tree.get(p)!.linkGroup = group;
  }
  return tree;
}

export type TreeField = Exclude<keyof TreeNode, 'path' | 'ino'>;
const FIELDS: TreeField[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'linkGroup', 'xattrs', 'rdevMajor', 'rdevMinor', 'mtimeNs'];

export interface DiffOptions {
  /** Fields not compared at all. */
  ignore?: TreeField[];
  /** Fields not compared for these paths (e.g. the mtime of a directory a tool had to touch). */
  ignoreAt?: Record<string, TreeField[]>;
}

/** Every difference between two trees, one line each; empty when they match. */
export function diffTrees(actual: Tree, expected: Tree, opts: DiffOptions = {}): string[] {
  const out: string[] = [];
  const ignore = new Set(opts.ignore ?? []);
  for (const path of [...new Set([...actual.keys(), ...expected.keys()])].sort()) {
    const a = actual.get(path);
    const e = expected.get(path);
    if (!a) { out.push(`${path}: missing`); continue; }
    if (!e) { out.push(`${path}: unexpected ${a.type}`); continue; }
    const local = new Set(opts.ignoreAt?.[path] ?? []);
    for (const f of FIELDS) {
      if (ignore.has(f) || local.has(f)) continue;
      const av = JSON.stringify(f === 'mode' ? a.mode.toString(8) : a[f]);
      const ev = JSON.stringify(f === 'mode' ? e.mode.toString(8) : e[f]);
      if (av !== ev) out.push(`${path}: ${f} is ${av}, expected ${ev}`);
    }
  }
  return out;
}
