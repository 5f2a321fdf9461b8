/**
 * OCI whiteouts. `.wh.NAME` hides NAME of the lower layers; `.wh..wh..opq` hides everything the
 * lower layers put in its directory. Both apply only to lower layers (OCI image spec, "Whiteouts"):
 * whatever this same layer adds stays, whether it comes before or after the marker in the tar,
 * so the layer's own paths are tracked and spared.
 */
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import type { DirTimes } from './metadata.ts';
import { ApplyError, errnoCode } from './errors.ts';
import { baseOf, parentOf, type SafeRoot } from './paths.ts';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

/** Paths this layer created or touched, with all their ancestors (which exist in its upper view too). */
export class LayerPaths {
  private readonly paths = new Set<string>(['']);

  add(rel: string): void {
    while (!this.paths.has(rel)) {
      this.paths.add(rel);
      rel = parentOf(rel);
    }
  }

  has(rel: string): boolean {
    return this.paths.has(rel);
  }
}

export function isWhiteout(rel: string): boolean {
  return baseOf(rel).startsWith(WHITEOUT_PREFIX);
}

const AUFS_META_PREFIX = '.wh..wh.';

/**
 * AUFS metadata, which docker skips: a `.wh..wh.*` name other than the opaque marker, or anything
 * under a top-level `.wh..wh.*` directory (such as `.wh..wh.plnk/`).
 */
export function isAufsMeta(rel: string): boolean {
  const base = baseOf(rel);
  if (base.startsWith(AUFS_META_PREFIX) && base !== OPAQUE_MARKER) return true;
  return rel.startsWith(AUFS_META_PREFIX) && rel.includes('/');
}

export class Whiteouts {
  constructor(private readonly root: SafeRoot, private readonly mine: LayerPaths, private readonly dirTimes: DirTimes) {}

  /** Removes `rel` and everything under it, never following symlinks. */
  async removeTree(rel: string, entry: string): Promise<void> {
    try {
      rmSync(this.root.abs(rel), { recursive: true, force: true });
    } catch (err) {
      throw new ApplyError(entry, `cannot remove ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
    this.root.forgetDirs();
    this.dirTimes.forget(rel);
  }

  /** Removes from directory `rel` everything that this layer did not put there, recursively. */
  async pruneLower(rel: string, entry: string): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.root.abs(rel));
    } catch (err) {
      throw new ApplyError(entry, `cannot list ${JSON.stringify(rel || '/')}: ${String(err)}`, { cause: err });
    }
    for (const name of names) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (!this.mine.has(child)) {
        await this.removeTree(child, entry);
        continue;
      }
      const st = lstatSync(this.root.abs(child));
      if (st.isDirectory()) await this.pruneLower(child, entry);
    }
  }

  /**
   * Applies the whiteout entry at cleaned path `rel`. Returns 'opaque' or 'whiteout'. A missing
   * parent means there is nothing to hide; a symlinked parent is refused.
   */
  async apply(rel: string, entry: string): Promise<'opaque' | 'whiteout'> {
    const base = baseOf(rel);
    const dir = parentOf(rel);
    const present = this.root.checkParents(rel, entry, { create: false, what: 'whiteout' });
    if (base === OPAQUE_MARKER) {
      if (present) {
        this.mine.add(dir);
        await this.pruneLower(dir, entry);
      }
      return 'opaque';
    }
    const hidden = base.slice(WHITEOUT_PREFIX.length);
    if (hidden === '' || hidden === '.' || hidden === '..') {
      throw new ApplyError(entry, `whiteout names no file (${JSON.stringify(base)})`);
    }
    if (!present) return 'whiteout';
    const target = dir === '' ? hidden : `${dir}/${hidden}`;
    let st;
    try {
      st = lstatSync(this.root.abs(target));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 'whiteout';
      throw new ApplyError(entry, `cannot inspect ${JSON.stringify(target)}: ${String(err)}`, { cause: err });
    }
    if (!this.mine.has(target)) await this.removeTree(target, entry);
    else if (st.isDirectory()) await this.pruneLower(target, entry);
    return 'whiteout';
  }
}
