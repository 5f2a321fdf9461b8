/**
 * Sealing a writable layer in place (formats.md §2.8, `overlaybd-commit --seal`): the live index
 * is appended to the data file, padded to 512 bytes, followed by a trailer whose index_size is the
 * real record count. No compaction: overwritten data stays as garbage. The header stays 0x03.
 */
import { open } from 'node:fs/promises';
import { FormatError } from '../../errors.ts';
import { decodeHeader, encodeHeader, FLAG_SEALED, FLAG_TYPE_DATA, hasLsmtMagic, HT_SPACE } from './header.ts';
import { encodeIndex, RECORD_SIZE } from './records.ts';
import { openWritableLayer } from './writable.ts';
import { SECTOR } from './types.ts';

export interface SealResult {
  indexOffset: number;
  records: number;
  fileSize: number;
}

export async function sealLayer(dataPath: string, indexPath: string): Promise<SealResult> {
  await refuseIfSealed(dataPath);
  const layer = await openWritableLayer(dataPath, indexPath);
  const header = layer.header;
  const indexOffset = layer.dataSize;
  const idx = layer.snapshot();
  await layer.close();
  // A trim's moffset is the data end when it was issued, which can lie past today's end if an
  // append failed; readers require zeroed moffsets within the data area, so clamp them.
  const limit = indexOffset / SECTOR;
  const moffset = idx.moffset as Float64Array;
  for (let i = 0; i < idx.count; i++) if (idx.zeroed[i] && moffset[i]! > limit) moffset[i] = limit;

  const perSector = SECTOR / RECORD_SIZE;
  const pad = (perSector - (idx.count % perSector)) % perSector;
  const records = encodeIndex(idx, pad);
  const trailer = encodeHeader({ ...header, flags: FLAG_TYPE_DATA | FLAG_SEALED, indexOffset, indexSize: idx.count });
  const fh = await open(dataPath, 'r+');
  try {
    await fh.write(records, 0, records.length, indexOffset);
    await fh.write(trailer, 0, trailer.length, indexOffset + records.length);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { indexOffset, records: idx.count, fileSize: indexOffset + records.length + trailer.length };
}

async function refuseIfSealed(dataPath: string): Promise<void> {
  const fh = await open(dataPath, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size < 2 * HT_SPACE) return;
    const b = new Uint8Array(HT_SPACE);
    await fh.read(b, 0, HT_SPACE, size - HT_SPACE);
    if (!hasLsmtMagic(b)) return;
    const t = decodeHeader(b, dataPath, size - HT_SPACE, 'trailer');
    if (t.flags & FLAG_SEALED) throw new FormatError(dataPath, size - HT_SPACE, 'the data file is already sealed (it ends with a sealed trailer)');
  } finally {
    await fh.close();
  }
}
