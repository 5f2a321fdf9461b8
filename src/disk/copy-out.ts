/**
 * Streams a disk's logical bytes out, walking its allocation map so zero runs cost nothing to
 * read: to a regular file they become holes (the file is sized with ftruncate and only data is
 * written); to a stream they are written from one shared zero buffer.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Disk, DiskExtent } from '../io/types.ts';

/** Bytes per disk read and per allocation-map query. */
const CHUNK = 4 << 20;
const ZEROS = new Uint8Array(CHUNK);

/** Visits the disk as runs of at most CHUNK bytes: data runs with their bytes, zero runs without. */
async function walkDisk(disk: Disk, onRun: (offset: number, bytes: Uint8Array | null, length: number) => Promise<void>): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  for (let pos = 0; pos < disk.size; pos += CHUNK) {
    const len = Math.min(CHUNK, disk.size - pos);
    const runs: DiskExtent[] = disk.extents ? await disk.extents(pos, len) : [{ offset: pos, length: len, hole: false, zero: false }];
    for (const r of runs) {
      if (r.zero) {
        await onRun(r.offset, null, r.length);
        continue;
      }
      const view = buf.subarray(0, r.length);
      await disk.read(view, r.offset);
      await onRun(r.offset, view, r.length);
    }
  }
}

/**
 * Writes the whole disk to a writable stream (e.g. stdout), zeros included. A stream error
 * (EPIPE when the reader went away) rejects instead of being an unhandled 'error' event.
 */
export async function copyDiskToStream(disk: Disk, out: Writable): Promise<void> {
  let failure: Error | undefined;
  const onError = (err: Error): void => { failure ??= err; };
  out.on('error', onError);
  const write = (b: Uint8Array): Promise<void> => new Promise((resolve, reject) => {
    if (failure) return reject(failure);
    // Waiting for the callback lets the caller reuse `b` afterwards.
    out.write(b, (err) => (err || failure ? reject(err ?? failure) : resolve()));
  });
  await walkDisk(disk, async (_offset, bytes, length) => {
    await write(bytes ?? ZEROS.subarray(0, length));
  });
  // On failure the listener stays: the stream may still emit its error later.
  out.off('error', onError);
}

/**
 * Writes the whole disk to an open file at positions equal to disk offsets. With `sparse`, the
 * file is sized first and zero runs are skipped (they read back as zeros from the holes).
 */
export async function copyDiskToFile(disk: Disk, fh: FileHandle, sparse: boolean): Promise<void> {
  if (sparse) await fh.truncate(disk.size);
  const writeAll = async (b: Uint8Array, at: number): Promise<void> => {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await fh.write(b, done, b.length - done, at + done);
      done += bytesWritten;
    }
  };
  await walkDisk(disk, async (offset, bytes, length) => {
    if (bytes) await writeAll(bytes, offset);
    else if (!sparse) await writeAll(ZEROS.subarray(0, length), offset);
  });
}
