/**
 * Positional file I/O over a raw fd: pread and whole-buffer pwrite/pwritev loops (local file sources, the writable layer).
 */
import { read as fsRead, readSync as fsReadSync, write as fsWrite, writev as fsWritev } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/*
 * Positional I/O through the callback API on the raw fd: on the hot paths (every write, every
 * extent copied by commit) it costs about half of what FileHandle's promise methods do.
 */
export function preadOnce(fd: number, dst: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, dst, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * A synchronous pread of up to `len` bytes, retried after short reads; returns the count, short
 * only at end of file. For a file source's `readSync` (commit gathers with it, see commit-stage.ts).
 */
export function preadSync(fd: number, dst: Uint8Array, off: number, len: number, pos: number): number {
  let done = 0;
  while (done < len) {
    const n = fsReadSync(fd, dst, off + done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export function pwriteOnce(fd: number, src: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWrite(fd, src, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function pwritevOnce(fd: number, bufs: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWritev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Writes consecutive buffers at `pos` with as few writev calls as the kernel allows. */
export async function writevAll(fd: number, bufs: Uint8Array[], pos: number): Promise<void> {
  if (bufs.length === 1) {
    const b = bufs[0]!;
    await pwriteAll(fd, b, pos);
    return;
  }
  let rest = bufs;
  while (rest.length > 0) {
    let n = await pwritevOnce(fd, rest, pos);
    if (n === 0) throw new Error(`writev at ${pos} wrote nothing`);
    pos += n;
    // A short write: drop what went out and continue from the middle of the first unfinished buffer.
    let i = 0;
    while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
    rest = rest.slice(i);
    if (n > 0) rest[0] = rest[0]!.subarray(n);
  }
}

/** The whole buffer at `pos`; a write that makes no progress fails instead of looping forever. */
async function pwriteAll(fd: number, data: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = await pwriteOnce(fd, data, done, data.length - done, pos + done);
    if (n === 0) throw new Error(`write at ${pos + done} wrote nothing`);
    done += n;
  }
}

export function writeAll(fh: FileHandle, data: Uint8Array, pos: number): Promise<void> {
  return pwriteAll(fh.fd, data, pos);
}

