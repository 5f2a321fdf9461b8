/**
 * What each layer entry means, whatever the target: one node per entry. An existing path of a
 * different type is removed first (a directory with its whole tree); a directory over a directory
 * keeps its contents and only takes the new metadata. Makers refuse a path that is taken (EEXIST)
 * and only then is the old node inspected and cleared, so a symlink left at the final component
 * is never followed either, and most paths (new ones) cost no extra lookup.
 */
import type { Readable } from 'node:stream';
import { ApplyError, errnoCode } from './errors.ts';
import { cleanEntryPath, ParentCheck } from './paths.ts';
import type { ApplyTarget, TargetNode } from './target.ts';
import type { EntryType, LayerEntry } from './tar-reader.ts';
import { isAufsMeta, isWhiteout, LayerPaths, Whiteouts } from './whiteouts.ts';

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

export async function drain(body: Readable): Promise<void> {
  for await (const _chunk of body) { /* discard: tar-stream needs every body read */ }
}

function what(entry: LayerEntry): string {
  return entry.type === 'hardlink' ? `a link to ${JSON.stringify(entry.linkname)}` : entry.type === 'file' ? 'file' : entry.type;
}

export class LayerApplier {
  readonly stats = emptyStats();
  private readonly mine = new LayerPaths();
  private readonly parents: ParentCheck;
  private readonly whiteouts: Whiteouts;

  constructor(private readonly target: ApplyTarget) {
    this.parents = new ParentCheck(target);
    this.whiteouts = new Whiteouts(target, this.parents, this.mine);
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
      await this.target.updateDirectory('', entry);
      this.stats.entries.directory++;
      return;
    }
    try {
      // A hard link's target is checked before anything is made for the link itself.
      const linkTarget = entry.type === 'hardlink' ? await this.hardlinkTarget(entry) : '';
      await this.parents.check(rel, entry, { create: true, onCreate: (p) => this.mine.add(p) });
      this.mine.add(rel);
      switch (entry.type) {
        case 'file': this.stats.bytesWritten += await this.create(rel, entry, () => this.target.writeFile(rel, entry, body)); break;
        case 'directory': await this.directory(rel, entry); break;
        case 'symlink': await this.create(rel, entry, () => this.target.symlink(rel, entry)); break;
        case 'hardlink': if (linkTarget !== rel) await this.create(rel, entry, () => this.target.hardlink(rel, linkTarget, entry)); break;
        case 'character-device': case 'block-device': case 'fifo':
          await this.clear(rel, entry, null);
          await this.create(rel, entry, () => this.target.special(rel, entry));
          break;
      }
    } catch (err) {
      if (entry.type === 'file') await drain(body).catch(() => {});
      throw err;
    }
    this.stats.entries[entry.type]++;
  }

  /** Completes the layer; call once after the last entry. */
  async finish(): Promise<void> {
    await this.target.finish();
  }

  /** After a failure: the target keeps what was applied up to the failing entry, consistent. */
  async settle(): Promise<void> {
    await this.target.settle?.();
  }

  /** Removes whatever is at `rel` (whole trees too); `st` when already known. */
  private async clear(rel: string, entry: LayerEntry, st: TargetNode | null | undefined): Promise<void> {
    const node = st === undefined || st === null ? await this.target.stat(rel, entry.name) : st;
    if (node === null) return;
    if (node.type === 'directory') await this.whiteouts.removeTree(rel, entry.name);
    else await this.target.remove(rel, entry.name);
  }

  /** Runs `make`; when the path is taken, clears it and runs `make` once more. */
  private async create<T>(rel: string, entry: LayerEntry, make: () => Promise<T>): Promise<T> {
    try {
      return await make();
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    await this.clear(rel, entry, undefined);
    try {
      return await make();
    } catch (err) {
      throw this.wrap(entry, err);
    }
  }

  /**
   * Targets throw ApplyErrors for their own failures and pass the body's errors (a truncated tar)
   * unchanged, for the caller to make FormatErrors; only a path still taken is named here.
   */
  private wrap(entry: LayerEntry, err: unknown): unknown {
    if (errnoCode(err) !== 'EEXIST') return err;
    return new ApplyError(entry.name, `cannot create ${what(entry)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }

  private async directory(rel: string, entry: LayerEntry): Promise<void> {
    try {
      await this.target.mkdir(rel, entry);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      const st = await this.target.stat(rel, entry.name);
      if (st?.type === 'directory') {
        await this.target.updateDirectory(rel, entry);
      } else {
        await this.clear(rel, entry, st);
        try {
          await this.target.mkdir(rel, entry);
        } catch (err2) {
          throw this.wrap(entry, err2);
        }
      }
    }
    this.parents.noteDir(rel);
  }

  /** The root-relative path of an existing, non-directory hard-link target reached without symlinks. */
  private async hardlinkTarget(entry: LayerEntry): Promise<string> {
    if (entry.linkname === '') throw new ApplyError(entry.name, 'hard link without a target');
    const targetRel = cleanEntryPath(entry.linkname, entry.name, 'hard link target');
    if (targetRel === '') throw new ApplyError(entry.name, 'hard link target is the root directory');
    if (targetRel.startsWith(`${cleanEntryPath(entry.name)}/`)) {
      throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} lies inside the path the link would replace`);
    }
    const exists = await this.parents.check(targetRel, entry.name, { create: false, what: 'hard link target' });
    const target = exists ? await this.target.stat(targetRel, entry.name) : null;
    if (target === null) throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} does not exist`);
    if (target.type === 'directory') throw new ApplyError(entry.name, `hard link target ${JSON.stringify(entry.linkname)} is a directory`);
    return targetRel;
  }
}
