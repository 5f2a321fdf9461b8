/**
 * Blobs: size (HEAD), whole fetch (digest-verified), ranged reads straight into the caller's
 * buffer (206, or a 200 whose body is the whole blob), uploads (monolithic or chunked, restarted
 * from scratch on a transient failure, since a half-applied PATCH leaves the session unknown),
 * and cross-repository mounts.
 */
import type { RegistrySession, RepositoryRef } from './session.ts';
import { repositoryScope } from './auth.ts';
import { checkDigest, hasherFor, sha256Digest } from './digest.ts';
import { RegistryError } from './errors.ts';
import { TransientError, drain, header, parseContentRange, type HttpResponse } from './transport.ts';
import { downloadBlob, uploadBlobFrom, type ChunkSink, type SourceUploadOptions, type UploadResult } from './blob-transfer.ts';

export type { UploadResult } from './blob-transfer.ts';
import type { ByteSource } from '../io/types.ts';

export interface UploadOptions {
  /** Send the blob in PATCH chunks of this many bytes (default: one monolithic PUT). */
  chunkSize?: number;
  /** Skip the upload when HEAD finds the blob already (default true). */
  skipExisting?: boolean;
  /** Try a cross-repository mount from this repository first. */
  mountFrom?: string;
  /** Single-request upload: `POST …/uploads/?digest=` with the body (not every registry supports it). */
  monolithicPost?: boolean;
}


/** Whole blobs fetched into memory are capped; larger ones should be read by range. */
export const MAX_WHOLE_BLOB_BYTES = 1 << 30;

export class BlobApi {
  constructor(private readonly client: RegistrySession) {}

  private path(repo: RepositoryRef, digest: string): string {
    return `/v2/${repo.repository}/blobs/${checkDigest(digest)}`;
  }

  /** The blob's size, or undefined if the repository has no such blob. */
  async head(repo: RepositoryRef, digest: string): Promise<number | undefined> {
    const path = this.path(repo, digest);
    return this.client.call({ method: 'HEAD', registry: repo.registry, repository: repo.repository, path,
      ok: [200, 404], redirects: true, kind: 'blob' }, async (res) => {
      await res.body.dump();
      if (res.status === 404) return undefined;
      const size = Number(header(res.headers, 'content-length'));
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new RegistryError('HEAD', res.url, res.status, [], 'no usable Content-Length for the blob size');
      }
      return size;
    });
  }

  /** The blob's size; a missing blob is an error naming the URL. */
  async size(repo: RepositoryRef, digest: string): Promise<number> {
    const size = await this.head(repo, digest);
    if (size === undefined) {
      throw new RegistryError('HEAD', this.client.url(repo.registry, this.path(repo, digest)), 404, [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }]);
    }
    return size;
  }

  /** The whole blob, checked against its digest (and size, when given). */
  async get(repo: RepositoryRef, digest: string, expectedSize?: number): Promise<Buffer> {
    const path = this.path(repo, digest);
    return this.client.call({ method: 'GET', registry: repo.registry, repository: repo.repository, path,
      ok: [200], redirects: true, deadline: false, kind: 'blob' }, async (res) => {
      const hash = hasherFor(digest);
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const chunk of res.body) {
          const c = chunk as Buffer;
          total += c.length;
          if (total > (expectedSize ?? MAX_WHOLE_BLOB_BYTES)) {
            throw new RegistryError('GET', res.url, res.status, [], `body exceeds ${expectedSize ?? MAX_WHOLE_BLOB_BYTES} bytes`);
          }
          hash.update(c);
          chunks.push(c);
        }
      } finally {
        this.client.stats.record(digest, total);
      }
      if (expectedSize !== undefined && total !== expectedSize) {
        throw new TransientError(new RegistryError('GET', res.url, res.status, [], `body truncated: ${total} of ${expectedSize} bytes`));
      }
      const got = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`;
      if (got !== digest) throw new RegistryError('GET', res.url, res.status, [], `blob content has digest ${got}, expected ${digest}`);
      return Buffer.concat(chunks, total);
    });
  }

  /**
   * Fills `dst` with the blob's bytes at `offset` using a Range request. `blobSize`, when known,
   * lets a 200 answer (a registry ignoring Range) be checked and sliced. Never returns short:
   * truncated answers are retried, then reported. `onFilled(n)`: the first n bytes of `dst` have
   * arrived (each attempt starts again at 0).
   */
  async readRange(repo: RepositoryRef, digest: string, offset: number, dst: Uint8Array, blobSize?: number,
    onFilled?: (n: number) => void): Promise<void> {
    if (dst.length === 0) return;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid blob offset ${offset}`);
    if (blobSize !== undefined && offset + dst.length > blobSize) {
      throw new RangeError(`range ${offset}+${dst.length} is beyond the end of blob ${digest} (size ${blobSize})`);
    }
    const want = dst.length;
    const last = offset + want - 1;
    const path = this.path(repo, digest);
    await this.client.call({ method: 'GET', registry: repo.registry, repository: repo.repository, path,
      headers: { range: `bytes=${offset}-${last}` }, ok: [200, 206], redirects: true, kind: 'blob' }, async (res) => {
      const fail = (problem: string, transient = false): Error => {
        const e = new RegistryError('GET', res.url, res.status, [], `${problem} (asked for bytes=${offset}-${last})`);
        return transient ? new TransientError(e) : e;
      };
      if (res.status === 206) {
        const cr = parseContentRange(header(res.headers, 'content-range'));
        if (!cr || cr.start !== offset || cr.end !== last) {
          await drain(res);
          throw fail(`answered with Content-Range ${JSON.stringify(header(res.headers, 'content-range') ?? null)}`);
        }
        if (blobSize !== undefined && cr.total !== undefined && cr.total !== blobSize) {
          await drain(res);
          throw fail(`blob size is ${cr.total}, expected ${blobSize}`);
        }
        const total = await this.fill(res, digest, dst, 0, onFilled);
        if (total < want) throw fail(`body truncated: ${total} of ${want} bytes`, true);
        if (total > want) throw fail(`body has ${total} bytes, more than the ${want} asked for`);
        return;
      }
      // 200: the registry (or a proxy) ignored Range and sends the whole blob, or something wrong.
      const lengthHeader = header(res.headers, 'content-length');
      const size = blobSize ?? (lengthHeader !== undefined ? Number(lengthHeader) : undefined);
      if (size !== undefined && lengthHeader !== undefined && Number(lengthHeader) !== size) {
        await drain(res);
        throw fail(`answered 200 with a ${lengthHeader}-byte body for a partial range of a ${size}-byte blob`);
      }
      const total = await this.fill(res, digest, dst, offset, onFilled);
      if (size !== undefined && total < size) throw fail(`body truncated: ${total} of ${size} bytes`, true);
      if (size !== undefined && total > size) throw fail(`answered 200 with ${total} bytes, the blob is ${size} bytes`);
      if (total < offset + want) throw fail(`answered 200 with ${total} bytes, too short for the range`);
    });
  }

  /** Copies the body bytes in [skip, skip + dst.length) into dst; returns the body's total length. */
  private async fill(res: HttpResponse, digest: string, dst: Uint8Array, skip: number, onFilled?: (n: number) => void): Promise<number> {
    let pos = 0;
    const end = skip + dst.length;
    onFilled?.(0);
    try {
      for await (const chunk of res.body) {
        const c = chunk as Buffer;
        const from = Math.max(skip, pos);
        const to = Math.min(end, pos + c.length);
        if (to > from) {
          dst.set(c.subarray(from - pos, to - pos), from - skip);
          onFilled?.(to - skip);
        }
        pos += c.length;
      }
    } finally {
      this.client.stats.record(digest, pos);
    }
    return pos;
  }

  /** Pushes a blob unless present; returns its digest and how it got there. */
  async upload(repo: RepositoryRef, data: Uint8Array, opts: UploadOptions = {}): Promise<UploadResult> {
    const digest = sha256Digest(data);
    const size = data.length;
    if (opts.skipExisting !== false && (await this.head(repo, digest)) === size) return { digest, size, how: 'existing' };
    if (opts.mountFrom && (await this.mount(repo, opts.mountFrom, digest))) return { digest, size, how: 'mounted' };
    const uploads = `/v2/${repo.repository}/blobs/uploads/`;
    const base = { registry: repo.registry, repository: repo.repository, push: true, retry: false, deadline: false, kind: 'upload' } as const;
    await this.client.transport.retry(async () => {
      if (opts.monolithicPost) {
        await this.client.call({ ...base, method: 'POST', path: `${uploads}?digest=${encodeURIComponent(digest)}`,
          headers: { 'content-type': 'application/octet-stream' }, body: data, ok: [201] }, drain);
        return;
      }
      let location = await this.client.call({ ...base, method: 'POST', path: uploads, ok: [202] },
        async (res) => { await drain(res); return this.location(repo, res); });
      let sent = 0;
      const chunk = opts.chunkSize && opts.chunkSize > 0 ? opts.chunkSize : 0;
      while (chunk && size - sent > 0) {
        const n = Math.min(chunk, size - sent);
        const part = data.subarray(sent, sent + n);
        location = await this.client.call({ ...base, method: 'PATCH', path: location, body: part, ok: [202],
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${sent}-${sent + n - 1}` } },
        async (res) => { await drain(res); return this.location(repo, res); });
        sent += n;
      }
      const rest = data.subarray(sent);
      await this.client.call({ ...base, method: 'PUT', path: withQuery(location, 'digest', digest), body: rest,
        headers: { 'content-type': 'application/octet-stream' }, ok: [201, 204] }, drain);
    });
    return { digest, size, how: 'uploaded' };
  }

  /** Streams a (large) blob into `sink`, resuming after transient failures; see blob-transfer.ts. */
  download(repo: RepositoryRef, digest: string, sink: ChunkSink, expectedSize?: number): Promise<number> {
    return downloadBlob(this.client, repo, digest, sink, expectedSize);
  }

  /** Uploads a (large) ByteSource chunk by chunk; see blob-transfer.ts. */
  uploadFrom(repo: RepositoryRef, src: ByteSource, opts: SourceUploadOptions = {}): Promise<UploadResult> {
    return uploadBlobFrom(this.client, this, repo, src, opts);
  }

  /** Cross-repository mount; false when the registry started an upload instead (then cancelled). */
  async mount(repo: RepositoryRef, from: string, digest: string): Promise<boolean> {
    checkDigest(digest);
    const path = `/v2/${repo.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
    const result = await this.client.call({ method: 'POST', registry: repo.registry, repository: repo.repository, path,
      push: true, extraScopes: [repositoryScope(from, false)], ok: [201, 202], kind: 'upload' }, async (res) => {
      await drain(res);
      return res.status === 201 ? undefined : this.location(repo, res);
    });
    if (result === undefined) return true;
    // Cancel the session the registry opened; leaving it only wastes registry space until GC.
    await this.client.call({ method: 'DELETE', registry: repo.registry, repository: repo.repository, path: result,
      push: true, ok: [200, 202, 204, 404], kind: 'upload' }, drain).catch(() => undefined);
    return false;
  }

  private location(repo: RepositoryRef, res: HttpResponse): string {
    const loc = header(res.headers, 'location');
    if (!loc) throw new RegistryError(res.method, res.url, res.status, [], 'upload response has no Location header');
    return new URL(loc, this.client.baseUrl(repo.registry)).toString();
  }
}

function withQuery(url: string, key: string, value: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${key}=${encodeURIComponent(value)}`;
}
