/**
 * The peer protocol: plain HTTP/1.1, so `curl` can debug it.
 *
 *   GET /blobs/<sha256:digest>
 *   Authorization: Bearer <shared token>          401 without it (when the node has a token)
 *   Range: bytes=<first>-<last>                    206 with Content-Range; absent: 200, whole blob
 *   X-Dadi-Repository: <registry>/<repository>     where the blob lives (the root fetches it there)
 *   X-Dadi-Blob-Size: <bytes>                      the size from the manifest (opens the cache)
 *   X-Dadi-P2P-Path: <peer>,<peer>,...             the peers this request went through; a node
 *                                                  that finds itself in it answers 508 (a loop)
 *
 * e.g. curl -H 'Authorization: Bearer T' -H 'X-Dadi-Repository: reg:5000/app' \
 *        -H 'X-Dadi-Blob-Size: 1234567' -r 0-1023 http://10.0.0.7:7070/blobs/sha256:…
 */
import { timingSafeEqual } from 'node:crypto';

export const PATH_HEADER = 'x-dadi-p2p-path';
export const REPOSITORY_HEADER = 'x-dadi-repository';
export const SIZE_HEADER = 'x-dadi-blob-size';
export const BLOB_PREFIX = '/blobs/';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function blobUrlPath(digest: string): string {
  return `${BLOB_PREFIX}${digest}`;
}

/** The digest of a `/blobs/<digest>` request path, or undefined. */
export function parseBlobUrlPath(path: string): string | undefined {
  const p = path.split('?')[0]!;
  if (!p.startsWith(BLOB_PREFIX)) return undefined;
  const d = decodeURIComponent(p.slice(BLOB_PREFIX.length));
  return DIGEST.test(d) ? d : undefined;
}

export function formatPath(peers: readonly string[]): string {
  return peers.join(',');
}

export function parsePath(header: string | string[] | undefined): string[] {
  const v = Array.isArray(header) ? header.join(',') : header ?? '';
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** `registry/repository` split at the first slash (a registry name never contains one). */
export function parseRepository(header: string | string[] | undefined): { registry: string; repository: string } | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  const m = v ? /^([^/\s]+)\/([a-z0-9._\-/]+)$/.exec(v) : null;
  return m ? { registry: m[1]!, repository: m[2]! } : undefined;
}

/** A single `bytes=a-b` / `bytes=a-` range within `size`; undefined: no Range; 'bad': unsatisfiable or malformed. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined | 'bad' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return 'bad';
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (!Number.isSafeInteger(start) || start >= size || end < start) return 'bad';
  return { start, end };
}

/** Constant-time check of `Authorization: Bearer <token>`. */
export function tokenMatches(authorization: string | undefined, token: string): boolean {
  const m = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization) : null;
  if (!m) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
