/**
 * Opens a local image as a Disk: a device config (`config.v1.json`) or layer files lowest first,
 * with an optional writable layer kept in a directory (DIR/writable_data + DIR/writable_index,
 * the names the overlaybd snapshotter uses), created on first use and reopened afterwards.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Disk } from '../io/types.ts';
import { SECTOR } from '../format/lsmt/types.ts';
import { createWritableLayer } from '../format/lsmt/writable.ts';
import { openStackFromFiles, parsePair, type LowerSpec, type WritablePairPaths } from './chain/files.ts';
import { loadDeviceConfig, writeResultFile } from './device-config.ts';

export interface LocalImageOptions {
  /** Keep a writable layer here (created if absent). */
  writableDir?: string;
  /** Virtual size: of a new writable layer, or of the disk when no layer states one. */
  size?: number;
  /** Serve without the writable layer on top (a config's upper is then read as a lower). */
  readOnly?: boolean;
}

export const WRITABLE_DATA = 'writable_data';
export const WRITABLE_INDEX = 'writable_index';

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** Whether a single argument names a device config rather than a layer file. */
async function isDeviceConfig(path: string): Promise<boolean> {
  if (path.endsWith('.json')) return true;
  try {
    const head = (await readFile(path)).subarray(0, 64).toString('utf8').trimStart();
    return head.startsWith('{');
  } catch {
    return false;
  }
}

/** Creates the writable pair in `dir` unless it exists; refuses a half-present pair. */
async function ensureWritable(dir: string, lowerCount: number, size: number | undefined): Promise<WritablePairPaths> {
  const pair = { data: join(dir, WRITABLE_DATA), index: join(dir, WRITABLE_INDEX) };
  const [hasData, hasIndex] = await Promise.all([exists(pair.data), exists(pair.index)]);
  if (hasData && hasIndex) return pair;
  if (hasData !== hasIndex) {
    throw new Error(`${dir}: has ${hasData ? WRITABLE_DATA : WRITABLE_INDEX} but not ${hasData ? WRITABLE_INDEX : WRITABLE_DATA}; refusing to guess`);
  }
  if (!(await exists(dir))) throw new Error(`--writable ${dir}: no such directory`);
  if (lowerCount === 0 && size === undefined) {
    throw new Error(`a new writable layer with no layers below needs --size (e.g. --size 10G)`);
  }
  const virtualSize = size ?? 0; // 0 = take the size of the layers below
  if (virtualSize % SECTOR !== 0) throw new Error(`--size ${virtualSize} must be a multiple of ${SECTOR} bytes`);
  const layer = await createWritableLayer(pair.data, pair.index, { virtualSize, tag: lowerCount });
  await layer.close();
  return pair;
}

/**
 * `args`: one device config JSON, or layer files lowest first (`DATA,INDEX` names a writable
 * pair read as a read-only layer). Returns the stack as a Disk; the caller closes it.
 */
export async function openLocalImage(args: string[], opts: LocalImageOptions = {}): Promise<Disk> {
  if (args.length === 0 && !opts.writableDir) throw new Error('no image: give a device config JSON or layer files (lowest first)');
  if (opts.readOnly && opts.writableDir) throw new Error('--read-only and --writable exclude each other');

  if (args.length === 1 && (await isDeviceConfig(args[0]!))) {
    const configPath = args[0]!;
    let resultFile: string | undefined;
    try {
      const cfg = await loadDeviceConfig(configPath);
      resultFile = cfg.resultFile;
      if (cfg.upper && opts.writableDir) throw new Error(`${configPath} has an "upper" writable layer; --writable would replace it`);
      const lowers: LowerSpec[] = [...cfg.lowers];
      let upper = cfg.upper;
      if (opts.readOnly && upper) {
        lowers.push(upper);
        upper = undefined;
      }
      if (opts.writableDir) upper = await ensureWritable(opts.writableDir, lowers.length, opts.size);
      if (upper && !((await exists(upper.data)) && (await exists(upper.index)))) {
        throw new Error(`${configPath}: the upper layer files ${upper.data} / ${upper.index} do not exist`);
      }
      const disk = await openStackFromFiles(lowers, {
        ...(upper ? { upper } : {}),
        ...(opts.size !== undefined && !opts.writableDir ? { size: opts.size } : {}),
      });
      if (resultFile) await writeResultFile(resultFile);
      return disk;
    } catch (err) {
      if (resultFile) await writeResultFile(resultFile, err).catch(() => {});
      throw err;
    }
  }

  const lowers: LowerSpec[] = [];
  for (const a of args) {
    if (a.includes(',') && !(await exists(a))) lowers.push(parsePair(a, 'layer'));
    else if (!(await exists(a))) throw new Error(`${a}: no such layer file`);
    else lowers.push(a);
  }
  const upper = opts.writableDir ? await ensureWritable(opts.writableDir, lowers.length, opts.size) : undefined;
  return openStackFromFiles(lowers, {
    ...(upper ? { upper } : {}),
    ...(opts.size !== undefined && !opts.writableDir ? { size: opts.size } : {}),
  });
}
