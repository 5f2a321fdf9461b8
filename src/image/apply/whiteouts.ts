/**
 * OCI whiteouts. `.wh.NAME` hides NAME of the lower layers; `.wh..wh..opq` hides everything the
 * lower layers put in its directory. Both apply only to lower layers (OCI image spec, "Whiteouts"):
 * whatever this same layer adds stays, whether it comes before or after the marker in the tar,
 * so the layer's own paths are tracked and spared.
 */
import { ApplyError } from './errors.ts';
import { baseOf, parentOf, type ParentCheck } from './paths.ts';
import type { ApplyTarget } from './target.ts';

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
  constructor(private readonly target: ApplyTarget, private readonly parents: ParentCheck, private readonly mine: LayerPaths) {}

  /** Removes `rel` and everything under it, never following symlinks. */
  async removeTree(rel: string, entry: string): Promise<void> {
    try {
      await this.target.remove(rel, entry);
    } catch (err) {
      if (err instanceof ApplyError) throw err;
      throw new ApplyError(entry, `cannot remove ${JSON.stringify(rel)}: ${String(err)}`, { cause: err });
    }
    this.parents.forgetDirs();
  }

  /** Removes from directory `rel` everything that this layer did not put there, recursively. */
  async pruneLower(rel: string, entry: string): Promise<void> {
    for (const name of await this.target.list(rel, entry)) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (!this.mine.has(child)) {
        await this.removeTree(child, entry);
        continue;
      }
      const st = await this.target.stat(child, entry);
      if (st?.type === 'directory') await this.pruneLower(child, entry);
    }
  }

  /**
   * Applies the whiteout entry at cleaned path `rel`. Returns 'opaque' or 'whiteout'. A missing
   * parent means there is nothing to hide; a symlinked parent is refused.
   */
  async apply(rel: string, entry: string): Promise<'opaque' | 'whiteout'> {
    const base = baseOf(rel);
    const dir = parentOf(rel);
    const present = await this.parents.check(rel, entry, { create: false, what: 'whiteout' });
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
    const st = await this.target.stat(target, entry);
    if (st === null) return 'whiteout';
    if (!this.mine.has(target)) await this.removeTree(target, entry);
    else if (st.type === 'directory') await this.pruneLower(target, entry);
    return 'whiteout';
  }
}
