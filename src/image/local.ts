/**
 * Opens a local image as a Disk: a device config (`config.v1.json`) or layer files lowest first,
 * with an optional writable layer kept in a directory (DIR/writable_data + DIR/writable_index,
 * the names the overlaybd snapshotter uses), created on first use and reopened afterwards.
 */
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Disk } from '../io/types.ts';
import { SECTOR } from '../format/lsmt/types.ts';
import { openStackFromFiles, parsePair, type LowerSpec } from './chain/files.ts';
import type { UpperSpec } from './chain/image.ts';
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

/**
 * The writable pair in `dir` (created, with the directory, when absent: the image chain gives a
 * new layer its identity from the layers below); refuses a half-present pair.
 */
async function writableIn(dir: string, lowerCount: number, size: number | undefined): Promise<UpperSpec> {
  const pair = { data: join(dir, WRITABLE_DATA), index: join(dir, WRITABLE_INDEX) };
  const [hasData, hasIndex] = await Promise.all([exists(pair.data), exists(pair.index)]);
  if (hasData && hasIndex) return pair;
  if (hasData !== hasIndex) {
    throw new Error(`${dir}: has ${hasData ? WRITABLE_DATA : WRITABLE_INDEX} but not ${hasData ? WRITABLE_INDEX : WRITABLE_DATA}; refusing to guess`);
  }
  if (lowerCount === 0 && size === undefined) {
    throw new Error(`a new writable layer with no layers below needs --size (e.g. --size 10G)`);
  }
  if (size !== undefined && size % SECTOR !== 0) throw new Error(`--size ${size} must be a multiple of ${SECTOR} bytes`);
  await mkdir(dir, { recursive: true });
  return { ...pair, create: size !== undefined ? { virtualSize: size } : {} };
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
      let upper: UpperSpec | undefined = cfg.upper;
      if (opts.readOnly && cfg.upper) {
        lowers.push(cfg.upper);
        upper = undefined;
      }
      if (upper && !((await exists(upper.data)) && (await exists(upper.index)))) {
        throw new Error(`${configPath}: the upper layer files ${upper.data} / ${upper.index} do not exist`);
      }
      if (opts.writableDir) upper = await writableIn(opts.writableDir, lowers.length, opts.size);
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
  const upper = opts.writableDir ? await writableIn(opts.writableDir, lowers.length, opts.size) : undefined;
  return openStackFromFiles(lowers, {
    ...(upper ? { upper } : {}),
    ...(opts.size !== undefined && !opts.writableDir ? { size: opts.size } : {}),
  });
}
