/**
 * Where a layer is applied. The applier (applier.ts) decides what each tar entry means (paths,
 * whiteouts, hostile entries, replacing what is there); a target only performs the operations:
 * today a host directory (host-target.ts, the mounted ext4 of the kernel path) or dadi's own
 * userspace ext4 (ext4-target.ts). Paths are root-relative ('' is the root, 'a/b' below it);
 * the applier has checked that every parent is a real directory before it names a path.
 */
import type { Readable } from 'node:stream';
import type { LayerEntry } from './tar-reader.ts';

export type TargetNodeType = 'file' | 'directory' | 'symlink' | 'other';

/** What lstat tells: the node's type and identity (inode number). */
export interface TargetNode { type: TargetNodeType; id: number }

export interface ApplyTarget {
  /** Names the target in errors. */
  readonly label: string;
  /** The node at `rel`, never following a final symlink; null when nothing is there. */
  stat(rel: string, entry: string): Promise<TargetNode | null>;
  /** The names in directory `rel`. */
  list(rel: string, entry: string): Promise<string[]>;
  /** Removes `rel`, with everything under it when it is a directory; never follows symlinks. */
  remove(rel: string, entry: string): Promise<void>;
  /** Makes the missing ancestor directory `rel` (mode 0755, owned by root) for `entry`. */
  makeParent(rel: string, entry: LayerEntry): Promise<void>;
  /*
   * The makers below fail with an error whose `code` is 'EEXIST' when something is at `rel`
   * (before consuming any body), so the applier can clear the path and retry.
   */
  /** A regular file with `body`'s bytes and the entry's metadata; resolves with the bytes written. */
  writeFile(rel: string, entry: LayerEntry, body: Readable): Promise<number>;
  mkdir(rel: string, entry: LayerEntry): Promise<void>;
  /** The existing directory `rel` takes the entry's metadata, keeping its contents. */
  updateDirectory(rel: string, entry: LayerEntry): Promise<void>;
  symlink(rel: string, entry: LayerEntry): Promise<void>;
  /** A hard link at `rel` to the existing non-directory `targetRel`. */
  hardlink(rel: string, targetRel: string, entry: LayerEntry): Promise<void>;
  /** A character or block device or a fifo. */
  special(rel: string, entry: LayerEntry): Promise<void>;
  /** After the layer's last entry: whatever the target deferred (directory times, flushing). */
  finish(): Promise<void>;
  /** After a failed entry: leave what was applied before it consistent (optional). */
  settle?(): Promise<void>;
}
