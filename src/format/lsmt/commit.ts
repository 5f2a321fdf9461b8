/**
 * Commit (compaction, formats.md §2.10, upstream `compact()`): the live extents of a layer copied
 * in LBA order into a fresh committed layer — header, packed data, merged and padded index,
 * trailer — written to any Sink (a file, a ZFile writer, a tar wrapper around one).
 */
import { FormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/types.ts';
import type { Sink } from '../../io/sink.ts';
import { encodeHeader, FLAG_HEADER, FLAG_SEALED, FLAG_TYPE_DATA, headerFields, HT_SPACE, USER_TAG_MAX } from './header.ts';
import { encodeIndex, SegmentArrays } from './records.ts';
import { MAX_EXTENT_SECTORS, SECTOR, type SegmentIndex } from './types.ts';

/** Committed indexes are padded to a multiple of this many records (4 KiB). */
export const INDEX_ALIGN_RECORDS = 256;
/** Upstream copies in 32 KiB chunks; we batch many chunks per sink write (same bytes, fewer calls). */
const STAGE_BYTES = 4 << 20;
const COPY_CHUNK = 32 << 10;

export interface CommitSource {
  /** Sorted, non-overlapping live extents (a level-0 snapshot or a loaded layer index). */
  index: SegmentIndex;
  /** Where the extents' data is, at moffset * 512. */
  data: ByteSource;
  virtualSize: number;
  /** Copied into the output unless the options give one. */
  parentUuid?: string;
}

export interface CommitOptions {
  /** The new layer's UUID; null (all zeros) unless given, as upstream. */
  uuid?: string;
  parentUuid?: string;
  /** The user tag (commit message), at most 256 bytes. */
  message?: string;
}

export interface CommitResult {
  /** LSMT bytes written (before any compression). */
  bytes: number;
  dataBytes: number;
  /** Records after merging, without padding. */
  records: number;
  indexOffset: number;
}

/** Appends records with upstream's neighbour merge (`compress_raw_index`) applied as they come. */
function pushMerged(out: SegmentArrays, off: number, len: number, moff: number, zeroed: number, tag: number): void {
  const j = out.count - 1;
  if (j >= 0) {
    const l = out.length[j]!;
    if (out.offset[j]! + l === off && out.moffset[j]! + l === moff && out.zeroed[j] === zeroed
      && out.tag[j] === tag && l + len < MAX_EXTENT_SECTORS) {
      out.length[j] = l + len;
      return;
    }
  }
  out.push(off, len, moff, zeroed, tag);
}

/** Writes the committed layer to `out` (which the caller closes). */
export async function commitLayer(src: CommitSource, out: Sink, opts: CommitOptions = {}): Promise<CommitResult> {
  const message = opts.message ?? '';
  if (Buffer.byteLength(message, 'utf8') > USER_TAG_MAX) throw new RangeError(`commit message is longer than ${USER_TAG_MAX} bytes`);
  const fields = {
    virtualSize: src.virtualSize,
    uuid: opts.uuid,
    parentUuid: opts.parentUuid ?? src.parentUuid,
    userTag: message,
  };
  const start = out.position;
  await out.write(encodeHeader(headerFields({ ...fields, flags: FLAG_HEADER | FLAG_TYPE_DATA | FLAG_SEALED })));

  const idx = src.index;
  const records = new SegmentArrays(Math.max(256, idx.count));
  const stage = new Uint8Array(STAGE_BYTES);
  let staged = 0;
  let reads: Promise<void>[] = [];
  let pos = HT_SPACE; // bytes of the LSMT stream so far, staged bytes included
  const file = src.data.name ?? 'layer data';

  const drain = async (): Promise<void> => {
    await Promise.all(reads);
    reads = [];
    if (staged > 0) await out.write(stage.subarray(0, staged));
    staged = 0;
  };
  const copy = (dst: Uint8Array, from: number): void => {
    reads.push(src.data.read(dst, from).then((n) => {
      if (n !== dst.length) throw new FormatError(file, from + n, `extent data truncated: wanted ${dst.length} bytes at ${from}`);
    }));
  };

  for (let i = 0; i < idx.count; i++) {
    const off = idx.offset[i]!;
    const len = idx.length[i]!;
    const tag = idx.tag[i]!;
    if (idx.zeroed[i]) {
      pushMerged(records, off, len, pos / SECTOR, 1, tag);
      continue;
    }
    pushMerged(records, off, len, pos / SECTOR, 0, tag);
    let from = idx.moffset[i]! * SECTOR;
    let left = len * SECTOR;
    while (left > 0) {
      if (staged === STAGE_BYTES) await drain();
      const n = Math.min(left, COPY_CHUNK, STAGE_BYTES - staged);
      copy(stage.subarray(staged, staged + n), from);
      staged += n; from += n; left -= n; pos += n;
    }
  }
  await drain();

  const indexOffset = pos;
  const merged = records.trimmed();
  const pad = (INDEX_ALIGN_RECORDS - (merged.count % INDEX_ALIGN_RECORDS)) % INDEX_ALIGN_RECORDS;
  const indexBytes = encodeIndex(merged, pad);
  await out.write(indexBytes);
  await out.write(encodeHeader(headerFields({
    ...fields, flags: FLAG_TYPE_DATA | FLAG_SEALED, indexOffset, indexSize: merged.count + pad,
  })));
  return { bytes: out.position - start, dataBytes: indexOffset - HT_SPACE, records: merged.count, indexOffset };
}
