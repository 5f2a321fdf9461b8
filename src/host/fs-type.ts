/**
 * Which file system a block device holds, from its superblock magic (the rule overlaybd uses
 * before mounting: EROFS magic at 1024, else ext2/3/4 magic at 1080). Mounting with a guessed
 * type would give the user a kernel message instead of a reason.
 */
import { open } from 'node:fs/promises';
import type { Disk } from '../io/types.ts';

export type FsType = 'ext4' | 'erofs';

const EROFS_MAGIC = 0xe0f5e1e2;
const EROFS_MAGIC_OFFSET = 1024;
const EXT_MAGIC = 0xef53;
const EXT_MAGIC_OFFSET = 1080;

/** The file system type the first 2 KiB of a device announce, or undefined when none is known. */
export function fsTypeFromSuperblock(head: Uint8Array): FsType | undefined {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.byteLength >= EROFS_MAGIC_OFFSET + 4 && view.getUint32(EROFS_MAGIC_OFFSET, true) === EROFS_MAGIC) return 'erofs';
  if (head.byteLength >= EXT_MAGIC_OFFSET + 2 && view.getUint16(EXT_MAGIC_OFFSET, true) === EXT_MAGIC) return 'ext4';
  return undefined;
}

/** Reads the superblock area of `device` and detects its file system. */
export async function detectFsType(device: string): Promise<FsType | undefined> {
  const fh = await open(device, 'r');
  try {
    const head = new Uint8Array(2048);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return fsTypeFromSuperblock(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * Detects the file system from the disk itself, in this process: the same bytes the device will
 * show, without a round trip through the kernel, loop, FUSE and NBD before the mount.
 */
export async function detectDiskFsType(disk: Disk): Promise<FsType | undefined> {
  const head = new Uint8Array(Math.min(2048, disk.size));
  await disk.read(head, 0);
  return fsTypeFromSuperblock(head);
}
