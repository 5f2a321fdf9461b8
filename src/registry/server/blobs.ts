/** Blob reads: GET/HEAD `/v2/<name>/blobs/<digest>`, with single-range `Range` support; DELETE unlinks. */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isDigest } from '../digest.ts';
import { HttpError, err, sendEmpty } from './http.ts';
import type { Storage } from './storage.ts';

export function checkBlobDigest(digest: string): void {
  if (!isDigest(digest)) throw err.digestInvalid(`invalid digest ${JSON.stringify(digest)}`);
  if (!digest.startsWith('sha256:')) throw new HttpError(400, 'DIGEST_INVALID', `unsupported digest algorithm: ${digest}`);
}

/** The blob's size if the repository may read it. */
export async function linkedBlobSize(storage: Storage, name: string, digest: string): Promise<number | undefined> {
  if ((await storage.linked(name, 'blobs', digest)) === undefined && (await storage.linked(name, 'manifests', digest)) === undefined) {
    return undefined;
  }
  return storage.blobSize(digest);
}

/** Parses one `bytes=` range against `size`; null when absent or not a single byte range (serve it all). */
export function parseRange(value: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!value) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

export async function getBlob(storage: Storage, name: string, digest: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkBlobDigest(digest);
  const size = await linkedBlobSize(storage, name, digest);
  if (size === undefined) throw err.blobUnknown(digest);
  const common = { 'docker-content-digest': digest, 'accept-ranges': 'bytes', etag: `"${digest}"` };
  const range = parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    throw new HttpError(416, 'RANGE_INVALID', `range ${req.headers.range} not satisfiable for a blob of ${size} bytes`,
      { 'content-range': `bytes */${size}` });
  }
  const head = req.method === 'HEAD';
  if (range) {
    res.writeHead(206, { ...common, 'content-type': 'application/octet-stream', 'content-length': range.end - range.start + 1,
      'content-range': `bytes ${range.start}-${range.end}/${size}` });
  } else {
    res.writeHead(200, { ...common, 'content-type': 'application/octet-stream', 'content-length': size });
  }
  if (head || size === 0) {
    res.end();
    return;
  }
  const from = range ? range.start : 0;
  const to = range ? range.end : size - 1;
  if (to - from + 1 <= SMALL_READ) {
    // Small ranges (the lazy-loading case): one positional read, no stream machinery.
    const buf = Buffer.allocUnsafe(to - from + 1);
    const fh = await open(storage.blobPath(digest), 'r');
    try {
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      if (bytesRead !== buf.length) throw new Error(`blob ${digest} is shorter than its recorded size`);
    } finally {
      await fh.close();
    }
    res.end(buf);
    return;
  }
  await pipeline(createReadStream(storage.blobPath(digest), { start: from, end: to }), res);
}

const SMALL_READ = 1 << 20;

export async function deleteBlob(storage: Storage, name: string, digest: string, res: ServerResponse): Promise<void> {
  checkBlobDigest(digest);
  if (!(await storage.unlink(name, 'blobs', digest))) throw err.blobUnknown(digest);
  sendEmpty(res, 202, { 'docker-content-digest': digest });
}
