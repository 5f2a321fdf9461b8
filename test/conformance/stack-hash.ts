/**
 * SHA-256 of a disk's whole logical content without one giant buffer: data runs are read in
 * chunks, zero runs come from a shared zero buffer. Hashing 1 GiB costs seconds, so equal
 * contents are hashed once: a cheap "sparse digest" (zero-run positions plus the data bytes with
 * their positions — a lossless description of the bytes) keys a cache of full digests.
 */
import { createHash } from 'node:crypto';
import type { Disk } from '../../src/io/types.ts';

const CHUNK = 4 << 20;
const ZEROS = new Uint8Array(CHUNK);

type RunVisitor = (offset: number, bytes: Uint8Array | null, length: number) => void;

async function walk(disk: Disk, visit: RunVisitor): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  for (let pos = 0; pos < disk.size; pos += CHUNK) {
    const len = Math.min(CHUNK, disk.size - pos);
    for (const r of await disk.extents!(pos, len)) {
      if (r.zero) {
        visit(r.offset, null, r.length);
      } else {
        const view = buf.subarray(0, r.length);
        await disk.read(view, r.offset);
        visit(r.offset, view, r.length);
      }
    }
  }
}

/** The plain SHA-256 of every byte of the disk. */
export async function fullSha256(disk: Disk): Promise<string> {
  const h = createHash('sha256');
  let expected = 0;
  await walk(disk, (offset, bytes, length) => {
    if (offset !== expected) throw new Error(`allocation map skips from ${expected} to ${offset}`);
    expected = offset + length;
    if (bytes) h.update(bytes);
    else for (let done = 0; done < length; done += CHUNK) h.update(ZEROS.subarray(0, Math.min(CHUNK, length - done)));
  });
  if (expected !== disk.size) throw new Error(`allocation map ends at ${expected}, the disk at ${disk.size}`);
  return h.digest('hex');
}

/**
 * Digest of the maximal zero runs and data runs, independent of extent boundaries: each run is
 * recorded as kind, start, length and (for data) the SHA-256 of its bytes, so equal digests mean
 * equal contents.
 */
async function sparseDigest(disk: Disk): Promise<string> {
  const outer = createHash('sha256');
  let inner = createHash('sha256');
  let runStart = 0;
  let runZero: boolean | null = null;
  let pos = 0;
  const close = (): void => {
    if (runZero === null) return;
    outer.update(`${runZero ? 'Z' : 'D'}:${runStart}:${pos - runStart}:${runZero ? '' : inner.digest('hex')};`);
    inner = createHash('sha256');
  };
  await walk(disk, (offset, bytes, length) => {
    if (offset !== pos) throw new Error(`allocation map skips from ${pos} to ${offset}`);
    const zero = bytes === null;
    if (zero !== runZero) {
      close();
      runStart = offset;
      runZero = zero;
    }
    if (bytes) inner.update(bytes);
    pos = offset + length;
  });
  close();
  outer.update(`size:${disk.size}`);
  return outer.digest('hex');
}

const cache = new Map<string, string>();

/** SHA-256 of the disk's bytes, computed in full once per distinct content. */
export async function diskSha256(disk: Disk): Promise<string> {
  const key = await sparseDigest(disk);
  let full = cache.get(key);
  if (full === undefined) {
    full = await fullSha256(disk);
    cache.set(key, full);
  }
  return full;
}
