/**
 * Layer blobs arrive gzip-, zstd- or un-compressed; the media type is not always trustworthy
 * (docker and some registries mislabel), so the first bytes decide.
 */
import { Transform, pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';

export type Compression = 'gzip' | 'zstd' | 'none';

export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** Reads up to `n` bytes without consuming them (they are pushed back with unshift). */
export async function peek(input: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  while (len < n) {
    if (input.errored) throw input.errored;
    const chunk = input.read() as Buffer | string | null;
    if (chunk !== null) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      chunks.push(buf);
      len += buf.length;
      continue;
    }
    if (input.readableEnded) break;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        input.off('readable', ok).off('end', ok).off('error', done);
        if (err) reject(err); else resolve();
      };
      const ok = () => done();
      input.on('readable', ok).on('end', ok).on('error', done);
    });
  }
  const head = Buffer.concat(chunks);
  if (head.length > 0) input.unshift(head);
  return head.subarray(0, n);
}

export interface TarSource {
  stream: Readable;
  compression: Compression;
}

/**
 * The plain tar bytes of `input`. `onInput` sees the cumulative count of (compressed) input bytes
 * consumed. Errors anywhere in the chain surface on the returned stream.
 */
export async function openTar(input: Readable, onInput?: (bytes: number) => void): Promise<TarSource> {
  const compression = detectCompression(await peek(input, 4));
  let consumed = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      consumed += chunk.length;
      onInput?.(consumed);
      cb(null, chunk);
    },
  });
  const noop = () => {};
  if (compression === 'none') return { stream: pipeline(input, counter, noop), compression };
  // 256 KiB output chunks instead of zlib's 16 KiB: a sixteenth of the thread-pool round trips
  // and of the write calls for the files they carry.
  const decoder = compression === 'gzip' ? createGunzip({ chunkSize: 256 * 1024 }) : new DecompressStream();
  return { stream: pipeline(input, counter, decoder, noop), compression };
}
