/**
 * Large blobs without holding them in memory: a download that streams into a sink and, after a
 * transient failure, resumes with `Range: bytes=N-` instead of starting over; and an upload that
 * reads a ByteSource chunk by chunk (one reused buffer) into PATCH requests. Both check the
 * digest: the download at the end, the upload by letting the registry verify the one we send.
 */
import type { ByteSource } from '../io/types.ts';
import { readFully } from '../io/types.ts';
import type { RegistrySession, RepositoryRef } from './session.ts';
import { checkDigest, hasherFor } from './digest.ts';
import { RegistryError } from './errors.ts';
import { TransientError, drain, header, parseContentRange } from './transport.ts';

export interface UploadResult { digest: string; size: number; how: 'existing' | 'mounted' | 'uploaded' }

/** What an upload asks of the blob API first: is the blob there already, can it be mounted. */
export interface BlobPresence {
  head(repo: RepositoryRef, digest: string): Promise<number | undefined>;
  mount(repo: RepositoryRef, from: string, digest: string): Promise<boolean>;
}

export interface ChunkSink { write(chunk: Uint8Array): Promise<void> | void }

export const DEFAULT_CHUNK_SIZE = 8 << 20;

/**
 * Streams the blob into `sink`; returns its size. The sink sees each byte once, in order, even
 * across resumed requests. If the digest does not match at the end, this rejects and the caller
 * must discard what the sink received.
 */
export async function downloadBlob(client: RegistrySession, repo: RepositoryRef, digest: string, sink: ChunkSink,
  expectedSize?: number): Promise<number> {
  const path = `/v2/${repo.repository}/blobs/${checkDigest(digest)}`;
  const hash = hasherFor(digest);
  let received = 0;
  let url = client.url(repo.registry, path);
  await client.transport.retry(async () => {
    const headers: Record<string, string> = received > 0 ? { range: `bytes=${received}-` } : {};
    await client.call({ method: 'GET', registry: repo.registry, repository: repo.repository, path, headers,
      ok: [200, 206], redirects: true, deadline: false, retry: false, kind: 'blob' }, async (res) => {
      url = res.url;
      let skip = 0;
      if (res.status === 206) {
        const cr = parseContentRange(header(res.headers, 'content-range'));
        if (!cr || cr.start !== received) {
          await drain(res);
          throw new RegistryError('GET', res.url, 206, [], `resumed at ${received} but got Content-Range ${header(res.headers, 'content-range') ?? '(none)'}`);
        }
      } else {
        skip = received; // Range ignored: the whole blob again; pass over what the sink has.
      }
      let got = 0;
      try {
        for await (const chunk of res.body) {
          let c = chunk as Buffer;
          got += c.length;
          if (skip > 0) {
            const n = Math.min(skip, c.length);
            skip -= n;
            c = c.subarray(n);
            if (c.length === 0) continue;
          }
          if (expectedSize !== undefined && received + c.length > expectedSize) {
            throw new RegistryError('GET', res.url, res.status, [], `blob is longer than the expected ${expectedSize} bytes`);
          }
          hash.update(c);
          await sink.write(c);
          received += c.length;
        }
      } finally {
        client.stats.record(digest, got);
      }
      if (skip > 0) throw new RegistryError('GET', res.url, res.status, [], `blob shorter than the ${received} bytes already received`);
      if (expectedSize !== undefined && received < expectedSize) {
        throw new TransientError(new RegistryError('GET', res.url, res.status, [], `body ended at ${received} of ${expectedSize} bytes`));
      }
    });
  });
  const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`;
  if (actual !== digest) {
    throw new RegistryError('GET', url, 200, [], `blob content has digest ${actual}, expected ${digest} (discard the downloaded bytes)`);
  }
  return received;
}

export interface SourceUploadOptions {
  /** Bytes per PATCH (default 8 MiB). */
  chunkSize?: number;
  /** The source's digest if known (saves a read pass). */
  digest?: string;
  skipExisting?: boolean;
  mountFrom?: string;
}

/** The sha256 digest of a whole source, read in chunks. */
export async function digestOfSource(src: ByteSource, chunkSize = DEFAULT_CHUNK_SIZE): Promise<string> {
  const hash = hasherFor('sha256:');
  const buf = new Uint8Array(Math.max(1, Math.min(chunkSize, src.size)));
  for (let off = 0; off < src.size; off += buf.length) {
    const part = buf.subarray(0, Math.min(buf.length, src.size - off));
    await readFully(src, part, off);
    hash.update(part);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** Uploads a ByteSource in PATCH chunks; a transient failure restarts the session from the start. */
export async function uploadBlobFrom(client: RegistrySession, blobs: BlobPresence, repo: RepositoryRef, src: ByteSource,
  opts: SourceUploadOptions = {}): Promise<UploadResult> {
  const chunkSize = opts.chunkSize && opts.chunkSize > 0 ? opts.chunkSize : DEFAULT_CHUNK_SIZE;
  const digest = opts.digest ? checkDigest(opts.digest) : await digestOfSource(src, chunkSize);
  const size = src.size;
  if (opts.skipExisting !== false && (await blobs.head(repo, digest)) === size) return { digest, size, how: 'existing' };
  if (opts.mountFrom && (await blobs.mount(repo, opts.mountFrom, digest))) return { digest, size, how: 'mounted' };
  const base = { registry: repo.registry, repository: repo.repository, push: true, retry: false, deadline: false, kind: 'upload' } as const;
  const location = (res: { headers: Parameters<typeof header>[0]; method: string; url: string; status: number }): string => {
    const loc = header(res.headers, 'location');
    if (!loc) throw new RegistryError(res.method, res.url, res.status, [], 'upload response has no Location header');
    return new URL(loc, client.baseUrl(repo.registry)).toString();
  };
  const buf = new Uint8Array(Math.max(1, Math.min(chunkSize, size)));
  await client.transport.retry(async () => {
    let at = await client.call({ ...base, method: 'POST', path: `/v2/${repo.repository}/blobs/uploads/`, ok: [202] },
      async (res) => { await drain(res); return location(res); });
    for (let sent = 0; sent < size;) {
      const part = buf.subarray(0, Math.min(buf.length, size - sent));
      await readFully(src, part, sent);
      at = await client.call({ ...base, method: 'PATCH', path: at, body: part, ok: [202],
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${sent}-${sent + part.length - 1}` } },
      async (res) => { await drain(res); return location(res); });
      sent += part.length;
    }
    await client.call({ ...base, method: 'PUT', path: `${at}${at.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`,
      ok: [201, 204] }, drain);
  });
  return { digest, size, how: 'uploaded' };
}
