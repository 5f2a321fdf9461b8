/**
 * The file system made on a converted image's first layer. Everything that would otherwise be
 * random (UUID, directory hash seed) is fixed, as the reference userspace convertor does
 * (formats.md §7.7 A step 2 and gotcha §11.12: "upstream userspace mkfs fixes the UUID and hash
 * seed"), so identical inputs lay out identical metadata. The options are part of the reuse key:
 * change them and earlier conversions are no longer reused.
 */

/** Fixed identity of every converted file system (any constant works; these are ours). */
export const FS_UUID = 'da0d1c0e-0000-4000-8000-00000000ba5e';
export const FS_HASH_SEED = 'da0d1c0e-0000-4000-8000-00000000a5ed';

/**
 * mkfs.ext4 options (formats.md §7.7 A / §11.12), each for a reason:
 * - `-b 4096`: the block size overlaybd's own mkfs uses, and the ZFile block size default;
 * - `-O ^has_journal`: a layer is written once then sealed; a journal only doubles the writes;
 * - `sparse_super,flex_bg -G 1`: few superblock backups, metadata kept per group;
 * - `-U`, `hash_seed`: reproducible metadata;
 * - `lazy_itable_init=1,nodiscard`: a new writable layer already reads as zeros, so neither
 *   zeroing nor discarding the device is needed (both would only add records to the layer);
 * - `-F`: the target is a block device of our own making.
 */
export const MKFS_OPTIONS: readonly string[] = [
  '-q', '-b', '4096', '-O', '^has_journal,sparse_super,flex_bg', '-G', '1',
  '-U', FS_UUID, '-E', `hash_seed=${FS_HASH_SEED},lazy_itable_init=1,nodiscard,root_owner=0:0`, '-F',
];

export function mkfsArgs(): string[] {
  return [...MKFS_OPTIONS];
}
