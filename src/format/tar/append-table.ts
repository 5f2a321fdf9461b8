/**
 * Sealing a finished tar-wrapped layer file with its chunk digest table (digest-table.ts): the end
 * of archive after the first member is replaced by the table member and a new end of archive. One
 * sequential pass over the file computes the chunk digests and the blob's own sha256 together,
 * so a converter pays one read for both (the file was just written: it is in the page cache).
 * The result depends only on the file's bytes, so converted digests stay reproducible.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { FormatError } from '../../errors.ts';
import { FileSource } from '../../io/file.ts';
import { BLOCK } from './header.ts';
import { locateTarPayload } from './reader.ts';
import {
  DEFAULT_CHUNK_SIZE, DIGEST_SIZE, encodeTable, sha256, tableMember, validChunkSize, type DigestTableRef,
} from './digest-table.ts';

export interface SealedBlob {
  /** `sha256:<hex>` of the whole file as it now is. */
  digest: string;
  size: number;
  table: DigestTableRef;
}

/** Where the first member ends (its payload padded to a block): the bytes the table covers. */
export async function firstMemberEnd(path: string): Promise<number> {
  const src = await FileSource.open(path);
  try {
    const { start, size } = await locateTarPayload(src);
    return start + Math.ceil(size / BLOCK) * BLOCK;
  } finally {
    await src.close();
  }
}

/** Appends the table to the tar-wrapped layer at `path` (in place) and returns the blob's identity. */
export async function appendDigestTable(path: string, chunkSize = DEFAULT_CHUNK_SIZE): Promise<SealedBlob> {
  if (!validChunkSize(chunkSize)) throw new RangeError(`chunk size ${chunkSize} is not a power of two in 4 KiB..16 MiB`);
  const covered = await firstMemberEnd(path);
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    if (size < covered) throw new FormatError(path, covered, `tar: the file ends at ${size}, inside its first member`);
    const whole = createHash('sha256');
    const n = Math.ceil(covered / chunkSize);
    const digests = new Uint8Array(n * DIGEST_SIZE);
    const per = Math.max(1, Math.floor((4 << 20) / chunkSize));
    const buf = Buffer.allocUnsafe(per * chunkSize);
    for (let i = 0; i < n; i += per) {
      const at = i * chunkSize;
      const len = Math.min(buf.length, covered - at);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, at + got);
        if (bytesRead === 0) throw new FormatError(path, at + got, 'unexpected end of file while hashing');
        got += bytesRead;
      }
      const piece = buf.subarray(0, len);
      whole.update(piece);
      for (let k = 0; k * chunkSize < len; k++) {
        digests.set(sha256(piece.subarray(k * chunkSize, (k + 1) * chunkSize)), (i + k) * DIGEST_SIZE);
      }
    }
    const member = tableMember(encodeTable({ chunkSize, covered, digests }));
    await fh.truncate(covered);
    await fh.write(member, 0, member.length, covered);
    await fh.sync();
    whole.update(member);
    return {
      digest: `sha256:${whole.digest('hex')}`,
      size: covered + member.length,
      table: { digest: `sha256:${sha256(member).toString('hex')}`, offset: covered, length: member.length },
    };
  } finally {
    await fh.close();
  }
}
