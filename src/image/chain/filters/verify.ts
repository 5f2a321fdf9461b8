/**
 * Chunk verification as a chain filter, between the upstream and the block cache: for a blob
 * whose descriptor names a digest table (the verify-table annotation), the table member is read
 * at attach, checked against the annotation's digest (the trust chain: manifest digest →
 * annotation → table → chunk), and every later fetch is checked chunk by chunk (io/verify.ts)
 * before the cache stores it or a reader sees it. A blob without a table passes through unchanged.
 */
import { createHash } from 'node:crypto';
import { DiskError } from '../../../errors.ts';
import { tableFromMember, type DigestTableRef } from '../../../format/tar/digest-table.ts';
import type { BlobCache } from '../../../io/cache.ts';
import { canRefetch } from '../../../io/refetch.ts';
import type { ByteSource } from '../../../io/types.ts';
import { VerifiedSource } from '../../../io/verify.ts';
import type { ChainContext, ChainFilter } from '../layer.ts';

const digestOf = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The table member's bytes, checked against the annotation's digest (read once more, from another upstream if any, on a mismatch). */
async function loadTableMember(next: ByteSource, ref: DigestTableRef, ctx: ChainContext): Promise<Uint8Array> {
  if (ref.offset + ref.length !== next.size) {
    throw new DiskError('EIO', `${ctx.name}: the verify table annotation places the table at ${ref.offset}+${ref.length}, the blob has ${next.size} bytes`);
  }
  const member = new Uint8Array(ref.length);
  let n = await next.read(member, ref.offset);
  if (n === member.length && digestOf(member) === ref.digest) return member;
  n = canRefetch(next)
    ? await next.refetch(member, ref.offset, 'the verify table does not match its annotation digest')
    : await next.read(member, ref.offset);
  if (n === member.length && digestOf(member) === ref.digest) return member;
  throw new DiskError('EIO', `${ctx.name}: the verify table from ${next.name ?? 'upstream'} (bytes ${ref.offset}..${ref.offset + ref.length}) ` +
    `does not match the digest ${ref.digest} in the layer's annotation, again after refetching`);
}

/**
 * `tables`: where verified tables are kept (the block cache); a kept table whose digest matches
 * the annotation saves the fetch at attach, one round trip off every attach after the first.
 */
export function verifyFilter(tables?: Pick<BlobCache, 'loadTable'>): ChainFilter {
  return async (next, ctx) => {
    const ref = ctx.blob?.table;
    if (!ref || !ctx.blob) return next;
    const kept = await tables?.loadTable(ctx.blob.digest);
    const member = kept && kept.length === ref.length && digestOf(kept) === ref.digest ? kept : await loadTableMember(next, ref, ctx);
    const table = tableFromMember(member, ctx.name, ref.offset);
    if (table.covered !== ref.offset) {
      throw new DiskError('EIO', `${ctx.name}: the verify table covers ${table.covered} bytes but sits at ${ref.offset}`);
    }
    if (member !== kept) ctx.verifyTable = member; // new to the cache: the cache filter keeps it
    const src = new VerifiedSource(next, { chunkSize: table.chunkSize, covered: table.covered, digests: table.digests, tail: member }, ctx.name);
    ctx.verify = src.counters;
    return src;
  };
}
