/** Content digests (`algorithm:hex`) as the OCI image spec defines them. */
import { createHash, type Hash } from 'node:crypto';
import { InvalidReferenceError } from './errors.ts';

const DIGEST_HEX: Record<string, number> = { sha256: 64, sha512: 128 };

export function isDigest(s: string): boolean {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(s);
  return m !== null && DIGEST_HEX[m[1]!] === m[2]!.length;
}

/** Throws unless `s` is a sha256/sha512 digest in canonical lower-case hex. */
export function checkDigest(s: string): string {
  if (!isDigest(s)) throw new InvalidReferenceError(`invalid digest "${s}": expected sha256:<64 hex> or sha512:<128 hex>`);
  return s;
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A hasher for the algorithm named by `digest`, for verifying streamed content. */
export function hasherFor(digest: string): Hash {
  const algo = digest.slice(0, digest.indexOf(':'));
  if (!(algo in DIGEST_HEX)) throw new InvalidReferenceError(`unsupported digest algorithm in "${digest}"`);
  return createHash(algo);
}

export function digestOf(data: Uint8Array, like: string): string {
  const algo = like.slice(0, like.indexOf(':'));
  return `${algo}:${hasherFor(like).update(data).digest('hex')}`;
}
