/**
 * Prefetch by file list, for images nobody traced (formats.md §7.8: a non-empty trace path
 * without the trace magic is a text list of absolute paths, at most 64 KiB; a trailing `/` or
 * `*` means a whole directory, recursively). The image's ext4 is read in userspace through the
 * stacked disk, each file's extents are looked up, and each disk range is mapped through the
 * merged index to (layer, offset in the layer file): the same records a recorded trace holds, so
 * the trace replay fetches them (in list order, merged, behind demand reads). Paths that do not
 * exist are skipped and counted, as overlaybd logs and skips them.
 */
import { Ext4Reader, type DiskRange } from '../../fs/ext4/reader.ts';
import type { Disk } from '../../io/types.ts';
import type { TraceRecord } from './format.ts';

export const MAX_FILE_LIST_BYTES = 64 << 10;
/** Files taken from one directory entry of the list, at most (a list naming `/` stays bounded). */
const MAX_FILES_PER_DIR = 10_000;
const SECTOR = 512;

/** Visits each extent of the stack's merged index over [sector, sector+count); `tag` 0 = top layer. */
export interface StackIndex {
  lookup(sector: number, count: number, visit: (offset: number, length: number, moffset: number, zeroed: boolean, tag: number) => void): void;
}

export interface FileListResult { records: TraceRecord[]; files: number; missing: string[] }

export function parseFileList(text: string, name = 'file list'): string[] {
  if (Buffer.byteLength(text) > MAX_FILE_LIST_BYTES) throw new Error(`${name}: ${Buffer.byteLength(text)} bytes, more than a file list may hold (${MAX_FILE_LIST_BYTES})`);
  const paths = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const p of paths) if (!p.startsWith('/')) throw new Error(`${name}: ${JSON.stringify(p)} is not an absolute path`);
  return paths;
}

/** The trace records that bring `paths` of the ext4 on `disk` (a stack of `layerCount` lowers). */
export async function fileListRecords(disk: Disk, index: StackIndex, layerCount: number, paths: readonly string[]): Promise<FileListResult> {
  const fs = await Ext4Reader.open(disk, 'image');
  const records: TraceRecord[] = [];
  const missing: string[] = [];
  let files = 0;
  const addRanges = (ranges: readonly DiskRange[]): void => {
    for (const r of ranges) {
      const first = Math.floor(r.offset / SECTOR);
      const count = Math.ceil((r.offset + r.length) / SECTOR) - first;
      index.lookup(first, count, (_offset, length, moffset, zeroed, tag) => {
        if (zeroed) return;
        records.push({ op: 'R', layer: layerCount - 1 - tag, offset: moffset * SECTOR, length: length * SECTOR });
      });
    }
  };
  const walk = async (dir: string, budget: { left: number }): Promise<void> => {
    for (const e of await fs.list(dir)) {
      if (budget.left <= 0) return;
      if (e.name === '.' || e.name === '..') continue;
      const path = `${dir === '/' ? '' : dir}/${e.name}`;
      if (e.kind === 'file') {
        budget.left--;
        files++;
        addRanges(await fs.extents(path));
      } else if (e.kind === 'directory') {
        await walk(path, budget);
      }
    }
  };
  for (const p of paths) {
    const whole = p.endsWith('/') || p.endsWith('*');
    const path = whole ? p.replace(/[/*]+$/, '') || '/' : p;
    try {
      if (whole) {
        await walk(path, { left: MAX_FILES_PER_DIR });
      } else {
        files++;
        addRanges(await fs.extents(path));
      }
    } catch {
      missing.push(p);
    }
  }
  return { records, files, missing };
}
