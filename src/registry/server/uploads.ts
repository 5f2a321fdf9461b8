/**
 * Blob uploads: POST starts a session (or finishes a monolithic `?digest=` upload, or mounts
 * `?mount=&from=`), PATCH appends in order (Content-Range checked, 416 otherwise), PUT finishes
 * and verifies the digest of the whole upload before anything is stored. A failed or aborted
 * append is cut back, so the session stays at its last good offset.
 */
import { createWriteStream } from 'node:fs';
import { truncate } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { isRepositoryName } from '../names.ts';
import { checkBlobDigest, linkedBlobSize } from './blobs.ts';
import { HttpError, err, sendEmpty } from './http.ts';
import { fileDigest, type Storage } from './storage.ts';

interface Session { name: string; queue: Promise<unknown>; touched: number }

/** Sessions idle this long are dropped with their data (clients abandon uploads). */
export const DEFAULT_UPLOAD_IDLE_MS = 60 * 60 * 1000;

export class Uploads {
  private readonly sessions = new Map<string, Session>();

  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly storage: Storage, private readonly idleMs = DEFAULT_UPLOAD_IDLE_MS) {
    this.sweeper = setInterval(() => void this.sweep(), Math.min(idleMs, 60_000));
    this.sweeper.unref();
  }

  /** Drops sessions nobody has touched for `idleMs`. */
  async sweep(now = Date.now()): Promise<number> {
    let dropped = 0;
    for (const [id, s] of this.sessions) {
      if (now - s.touched < this.idleMs) continue;
      this.sessions.delete(id);
      await this.storage.removeUpload(id);
      dropped++;
    }
    return dropped;
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  /** POST /v2/<name>/blobs/uploads/ */
  async start(name: string, url: URL, req: IncomingMessage, res: ServerResponse, mayMountFrom: (from: string) => boolean): Promise<void> {
    const mount = url.searchParams.get('mount');
    const from = url.searchParams.get('from');
    if (mount !== null && from !== null && isRepositoryName(from)) {
      checkBlobDigest(mount);
      if (mayMountFrom(from) && (await linkedBlobSize(this.storage, from, mount)) !== undefined) {
        req.resume();
        await this.storage.link(name, 'blobs', mount);
        sendEmpty(res, 201, { location: `/v2/${name}/blobs/${mount}`, 'docker-content-digest': mount });
        return;
      }
      // Not mountable: fall through to an ordinary upload session, as the spec says.
    }
    const id = await this.storage.newUpload();
    const digest = url.searchParams.get('digest');
    if (digest !== null) {
      checkBlobDigest(digest);
      try {
        await this.append(id, req, undefined);
        await this.finish(name, id, digest, res);
      } finally {
        await this.storage.removeUpload(id);
      }
      return;
    }
    req.resume();
    this.sessions.set(id, { name, queue: Promise.resolve(), touched: Date.now() });
    sendEmpty(res, 202, { location: `/v2/${name}/blobs/uploads/${id}`, range: '0-0', 'docker-upload-uuid': id });
  }

  /** Runs `fn` after the session's earlier requests, so appends to one session never interleave. */
  private serial<T>(name: string, id: string, fn: () => Promise<T>): Promise<T> {
    const s = this.sessions.get(id);
    if (!s || s.name !== name) throw err.uploadUnknown();
    s.touched = Date.now();
    const run = s.queue.then(fn, fn);
    s.queue = run.catch(() => undefined);
    return run;
  }

  /** PATCH /v2/<name>/blobs/uploads/<id> */
  patch(name: string, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.serial(name, id, async () => {
      const size = await this.sizeOf(id);
      const cr = req.headers['content-range'];
      let expected: number | undefined;
      if (cr !== undefined) {
        const m = /^(?:bytes )?(\d+)-(\d+)$/.exec(cr.trim());
        if (!m || Number(m[1]) !== size || Number(m[2]) < Number(m[1])) {
          req.resume();
          throw new HttpError(416, 'BLOB_UPLOAD_INVALID', `Content-Range ${cr} does not continue the upload at offset ${size}`,
            { location: `/v2/${name}/blobs/uploads/${id}`, range: rangeHeader(size), 'docker-upload-uuid': id });
        }
        expected = Number(m[2]) - Number(m[1]) + 1;
      }
      const now = await this.append(id, req, expected);
      sendEmpty(res, 202, { location: `/v2/${name}/blobs/uploads/${id}`, range: rangeHeader(now), 'docker-upload-uuid': id });
    });
  }

  /** PUT /v2/<name>/blobs/uploads/<id>?digest= */
  put(name: string, id: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.serial(name, id, async () => {
      const digest = url.searchParams.get('digest');
      if (digest === null) {
        req.resume();
        throw err.digestInvalid('digest query parameter missing');
      }
      checkBlobDigest(digest);
      try {
        await this.append(id, req, undefined);
        await this.finish(name, id, digest, res);
      } finally {
        this.sessions.delete(id);
        await this.storage.removeUpload(id);
      }
    });
  }

  /** GET /v2/<name>/blobs/uploads/<id>: where the upload stands. */
  status(name: string, id: string, res: ServerResponse): Promise<void> {
    return this.serial(name, id, async () => {
      const size = await this.sizeOf(id);
      sendEmpty(res, 204, { location: `/v2/${name}/blobs/uploads/${id}`, range: rangeHeader(size), 'docker-upload-uuid': id });
    });
  }

  /** DELETE /v2/<name>/blobs/uploads/<id>: cancel. */
  cancel(name: string, id: string, res: ServerResponse): Promise<void> {
    return this.serial(name, id, async () => {
      this.sessions.delete(id);
      await this.storage.removeUpload(id);
      sendEmpty(res, 204);
    });
  }

  private async sizeOf(id: string): Promise<number> {
    const size = await this.storage.uploadSize(id);
    if (size === undefined) throw err.uploadUnknown();
    return size;
  }

  /** Appends the request body; on failure, or a body of the wrong length, cuts the file back. */
  private async append(id: string, req: IncomingMessage, expected: number | undefined): Promise<number> {
    const path = this.storage.uploadPath(id);
    const before = await this.sizeOf(id);
    try {
      await pipeline(req, createWriteStream(path, { flags: 'a' }));
    } catch (e) {
      await truncate(path, before).catch(() => undefined);
      throw e;
    }
    const after = await this.sizeOf(id);
    if (expected !== undefined && after - before !== expected) {
      await truncate(path, before);
      throw new HttpError(400, 'SIZE_INVALID', `chunk has ${after - before} bytes, Content-Range announced ${expected}`);
    }
    return after;
  }

  private async finish(name: string, id: string, digest: string, res: ServerResponse): Promise<void> {
    const path = this.storage.uploadPath(id);
    const actual = await fileDigest(path);
    if (actual !== digest) {
      throw err.digestInvalid(`upload content has digest ${actual}, not ${digest}`);
    }
    if ((await this.storage.blobSize(digest)) === undefined) await this.storage.adoptBlob(path, digest);
    await this.storage.link(name, 'blobs', digest);
    sendEmpty(res, 201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest });
  }
}

function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}
