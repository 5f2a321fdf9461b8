/**
 * An image opened read-only for looking inside it without mounting (`dadi ls`, `dadi cat-file`):
 * a registry reference or `oci:DIR[:TAG]` attached lazily (only the blocks read are fetched), a
 * device config JSON, or layer files lowest first. One close() releases whatever was opened.
 */
import type { Disk } from '../io/types.ts';
import { openLocalImage } from './local.ts';
import type { RemoteImageOptions } from './remote.ts';

export interface OpenedImage { disk: Disk; label: string; close(): Promise<void> }

/** `image`: one registry reference, or one device config / layer files lowest first. */
export async function openImageReadOnly(image: readonly string[], remoteOptions: () => Promise<RemoteImageOptions>): Promise<OpenedImage> {
  const { pickRemoteImage } = await import('./remote/reference.ts');
  const ref = await pickRemoteImage(image);
  if (ref) {
    const { openRemoteImage } = await import('./remote.ts');
    const remote = await openRemoteImage(ref, { ...(await remoteOptions()), background: { enable: false }, statsIntervalMs: 0, logStatsOnClose: false });
    return { disk: remote.disk, label: ref, close: () => remote.close() };
  }
  const disk = await openLocalImage([...image], { readOnly: true });
  return { disk, label: image.join(' '), close: () => disk.close() };
}

/**
 * Runs `fn` with a userspace ext4 reader on the image the command-line arguments name (see
 * `openImageReadOnly`), closing the image after.
 */
export async function withImageReader<T>(image: readonly string[], remoteOptions: () => Promise<RemoteImageOptions>,
  fn: (fs: import('../fs/ext4/reader.ts').Ext4Reader) => Promise<T>): Promise<T> {
  const { Ext4Reader } = await import('../fs/ext4/reader.ts');
  const opened = await openImageReadOnly(image, remoteOptions);
  try {
    return await fn(await Ext4Reader.open(opened.disk, opened.label));
  } finally {
    await opened.close();
  }
}
