/**
 * The conversion record: which converted blob a source layer stack (its chainID) became under
 * given settings, and where that blob was pushed. Like the reference convertor's chainID →
 * converted-layer table (formats.md §7.7 A step 7), kept as one small JSON file per key under
 * the cache directory, so converting the same base again costs a HEAD (or a cross-repo mount)
 * instead of a mount, an untar and a commit.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Bumped when the converter's output for the same input and settings changes. */
export const CONVERT_FORMAT_VERSION = 2; // 2: blobs end with a chunk digest table

export interface ConvertSettings {
  compress: 'lz4' | 'zstd' | 'none';
  blockSize: number;
  /** Virtual size of layer 0 (later layers inherit it, so it shapes them all). */
  vsize: number;
  mkfs: readonly string[];
}

export interface ReuseRecord {
  chainId: string;
  settings: ConvertSettings & { formatVersion: number };
  digest: string;
  size: number;
  /** The verify-table annotation value of the blob, when it has a table. */
  table?: string;
  /** Where the blob was pushed, most recent last (`registry/repository` or `oci:DIR`). */
  locations: string[];
}

const MAX_LOCATIONS = 16;

export function reuseKey(chainId: string, settings: ConvertSettings): string {
  const canonical = JSON.stringify({ chainId, compress: settings.compress, blockSize: settings.blockSize, vsize: settings.vsize,
    mkfs: settings.mkfs, formatVersion: CONVERT_FORMAT_VERSION });
  return createHash('sha256').update(canonical).digest('hex');
}

export class ReuseStore {
  private readonly dir: string;
  constructor(cacheDir: string) {
    this.dir = join(cacheDir, 'convert');
  }

  private file(key: string): string {
    return join(this.dir, `${key}.json`);
  }

  /** The record for this layer and settings; a damaged record counts as none. */
  async get(chainId: string, settings: ConvertSettings): Promise<ReuseRecord | undefined> {
    try {
      const rec = JSON.parse(await readFile(this.file(reuseKey(chainId, settings)), 'utf8')) as ReuseRecord;
      if (rec.chainId !== chainId || typeof rec.digest !== 'string' || !Number.isSafeInteger(rec.size) || !Array.isArray(rec.locations)) return undefined;
      if (rec.table !== undefined && typeof rec.table !== 'string') return undefined;
      return rec;
    } catch {
      return undefined;
    }
  }

  /** Records that the blob is now at `location` as well. */
  async put(chainId: string, settings: ConvertSettings, digest: string, size: number, location: string, table?: string): Promise<void> {
    const prev = await this.get(chainId, settings);
    const same = prev && prev.digest === digest && prev.size === size;
    const locations = [...(same ? prev.locations.filter((l) => l !== location) : []), location].slice(-MAX_LOCATIONS);
    const rec: ReuseRecord = { chainId, settings: { ...settings, formatVersion: CONVERT_FORMAT_VERSION }, digest, size,
      ...(table !== undefined ? { table } : {}), locations };
    await mkdir(this.dir, { recursive: true });
    const file = this.file(reuseKey(chainId, settings));
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(rec, null, 2) + '\n');
    await rename(tmp, file);
  }
}
