/**
 * Applies OCI layer tars onto the lower layers' result: the core of image conversion. The target
 * is a host directory (the kernel-mounted ext4 of the stacked image) or dadi's userspace ext4.
 */
import { lstat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ApplyError } from './errors.ts';
import { openTar } from './decompress.ts';
import { HostTarget } from './host-target.ts';
import type { ApplyTarget } from './target.ts';
import { TarReader } from './tar-reader.ts';
import { LayerApplier, type ApplyStats } from './applier.ts';

export { ApplyError } from './errors.ts';
export { detectCompression, type Compression } from './decompress.ts';
export type { ApplyStats } from './applier.ts';
export type { ApplyTarget } from './target.ts';

export interface ApplyOptions {
  /** Called with the cumulative count of (compressed) input bytes consumed. */
  onProgress?(bytes: number): void;
  /** Names the layer in errors (e.g. its digest); default "layer". */
  name?: string;
}

/**
 * Applies one layer (gzip, zstd or plain tar, detected from its first bytes) onto `target`,
 * streaming. Entries that would escape the root or write through a symlink are refused with an
 * ApplyError naming the entry; a corrupt or truncated archive fails with a FormatError.
 */
export async function applyLayerTo(tarStream: Readable, target: ApplyTarget, opts: ApplyOptions = {}): Promise<ApplyStats> {
  const label = opts.name ?? 'layer';
  const { stream } = await openTar(tarStream, opts.onProgress);
  const reader = new TarReader(stream, label);
  const applier = new LayerApplier(target);
  try {
    for await (const { entry, body } of reader.entries()) await applier.apply(entry, body);
  } catch (err) {
    await applier.settle();
    if (err instanceof ApplyError) throw err;
    throw reader.asFormatError(err);
  } finally {
    tarStream.destroy();
  }
  await applier.finish();
  return applier.stats;
}

/** applyLayerTo a host directory `rootDir`. */
export async function applyLayer(tarStream: Readable, rootDir: string, opts: ApplyOptions = {}): Promise<ApplyStats> {
  const st = await lstat(rootDir);
  if (!st.isDirectory()) throw new ApplyError('', `the target ${rootDir} is not a directory`);
  return applyLayerTo(tarStream, new HostTarget(rootDir), opts);
}
