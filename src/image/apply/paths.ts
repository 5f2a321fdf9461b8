/**
 * Path safety for layer entries. Names are cleaned the way containerd does (absolute names become
 * relative to the root; `.` and empty components vanish) except that a `..` that would climb above
 * the root is refused rather than clamped. Parents are checked without following symlinks, so
 * nothing is ever written through a symlink, whether a lower layer or an earlier entry of this
 * one planted it.
 */
import { ApplyError } from './errors.ts';
import type { ApplyTarget } from './target.ts';
import type { LayerEntry } from './tar-reader.ts';

/**
 * The entry's path relative to the root, components joined by '/'; '' is the root itself.
 * Throws when `..` climbs above the root or the name holds a NUL.
 */
export function cleanEntryPath(name: string, entry = name, what = 'path'): string {
  if (name.includes('\0')) throw new ApplyError(entry, `${what} ${JSON.stringify(name)} contains a NUL byte`);
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new ApplyError(entry, `${what} ${JSON.stringify(name)} escapes the root directory through ".."`);
      out.pop();
    } else {
      out.push(part);
    }
  }
  return out.join('/');
}

export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

/**
 * The parents of the paths being written, with a cache of directories already checked to be real
 * (non-symlink) directories. The cache is dropped whenever anything is removed, since a later
 * entry could put a symlink where a checked directory was.
 */
export class ParentCheck {
  private readonly realDirs = new Set<string>(['']);

  constructor(private readonly target: ApplyTarget) {}

  /** Forget checked directories: call after removing anything that may have been a directory. */
  forgetDirs(): void {
    this.realDirs.clear();
    this.realDirs.add('');
  }

  noteDir(rel: string): void {
    this.realDirs.add(rel);
  }

  /**
   * Checks that every ancestor of `rel` is a real directory inside the root. With `create`,
   * missing ancestors are made (mode 0755, as containerd does) and reported through `onCreate`;
   * without it, returns false when one is missing.
   */
  async check(rel: string, entry: LayerEntry | string, opts: { create: boolean; onCreate?: (rel: string) => void; what?: string }): Promise<boolean> {
    const name = typeof entry === 'string' ? entry : entry.name;
    const parts = rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]}`;
      if (this.realDirs.has(prefix)) continue;
      const what = opts.what ?? 'path';
      const st = await this.target.stat(prefix, name);
      if (st === null) {
        if (!opts.create || typeof entry === 'string') return false;
        await this.target.makeParent(prefix, entry);
        opts.onCreate?.(prefix);
        this.realDirs.add(prefix);
        continue;
      }
      if (st.type === 'symlink') {
        throw new ApplyError(name, `${what} goes through ${JSON.stringify(prefix)}, which is a symlink; refusing to write through it`);
      }
      if (st.type !== 'directory') {
        throw new ApplyError(name, `${what} goes through ${JSON.stringify(prefix)}, which is not a directory`);
      }
      this.realDirs.add(prefix);
    }
    return true;
  }
}
