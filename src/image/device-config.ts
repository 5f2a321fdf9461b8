/**
 * The overlaybd per-device config (`config.v1.json`, formats.md §6) as far as a local open needs
 * it: `lowers` bottom-first (a `file`, or a `dir` holding a committed layer), `upper` (the
 * writable layer's `data` and `index`), and `resultFile`, where the outcome of opening is written
 * (`success` or `failed:<reason>`) for whoever waits on the device.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export interface DeviceConfig {
  /** Layer files, bottom first, resolved to paths that exist. */
  lowers: string[];
  /** The writable layer on top; absent (or empty in the JSON) for a read-only device. */
  upper?: { data: string; index: string };
  resultFile?: string;
}

/** The files a layer `dir` may hold, in the order the daemon looks for them. */
export const LAYER_DIR_FILES = ['overlaybd.commit', '.commit', 'overlaybd.sealed'];

export class DeviceConfigError extends Error {
  override readonly name = 'DeviceConfigError';
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** Reads and validates a config file; relative paths inside it are taken from its directory. */
export async function loadDeviceConfig(path: string): Promise<DeviceConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DeviceConfigError(path, `cannot read the device config: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new DeviceConfigError(path, `not valid JSON: ${(err as Error).message}`);
  }
  return resolveDeviceConfig(json, path);
}

/** Validates parsed JSON and resolves each lower to an existing layer file. */
export async function resolveDeviceConfig(json: unknown, path: string): Promise<DeviceConfig> {
  const base = dirname(resolve(path));
  const abs = (p: string): string => (isAbsolute(p) ? p : join(base, p));
  const fail = (problem: string): never => { throw new DeviceConfigError(path, problem); };
  if (!isObject(json)) fail('the device config must be a JSON object');
  const cfg = json as Record<string, unknown>;

  const out: DeviceConfig = { lowers: [] };
  if (cfg.resultFile !== undefined) {
    if (typeof cfg.resultFile !== 'string' || cfg.resultFile === '') fail('"resultFile" must be a non-empty string');
    out.resultFile = abs(cfg.resultFile as string);
  }
  if (cfg.lowers !== undefined && !Array.isArray(cfg.lowers)) fail('"lowers" must be an array (bottom layer first)');
  let lowers = (cfg.lowers ?? []) as unknown[];
  if (cfg.accelerationLayer === true) {
    // The last lower is a trace layer, not part of the disk.
    if (lowers.length === 0) fail('"accelerationLayer" is set but "lowers" is empty');
    lowers = lowers.slice(0, -1);
  }
  for (const [i, entry] of lowers.entries()) {
    const where = `lowers[${i}]`;
    if (!isObject(entry)) fail(`${where} must be an object with "file" or "dir"`);
    const e = entry as Record<string, unknown>;
    for (const key of ['file', 'dir'] as const) {
      if (e[key] !== undefined && (typeof e[key] !== 'string' || e[key] === '')) fail(`${where}.${key} must be a non-empty string`);
    }
    if (e.targetFile !== undefined || e.targetDigest !== undefined) {
      fail(`${where} is a turboOCI layer (targetFile/targetDigest), which a local open does not support`);
    }
    if (typeof e.file === 'string') {
      const file = abs(e.file);
      if (!(await exists(file))) fail(`${where}.file ${file} does not exist`);
      out.lowers.push(file);
    } else if (typeof e.dir === 'string') {
      const dir = abs(e.dir);
      let found: string | undefined;
      for (const name of LAYER_DIR_FILES) {
        if (await exists(join(dir, name))) { found = join(dir, name); break; }
      }
      if (!found) fail(`${where}.dir ${dir} holds none of ${LAYER_DIR_FILES.join(', ')}${e.digest ? ' (a remote layer not downloaded yet)' : ''}`);
      out.lowers.push(found!);
    } else if (e.digest !== undefined) {
      fail(`${where} is a remote layer (digest ${String(e.digest)}) with no local "file" or "dir"`);
    } else {
      fail(`${where} has neither "file" nor "dir"`);
    }
  }

  if (cfg.upper !== undefined) {
    if (!isObject(cfg.upper)) fail('"upper" must be an object with "data" and "index"');
    const u = cfg.upper as Record<string, unknown>;
    const hasData = u.data !== undefined && u.data !== '';
    const hasIndex = u.index !== undefined && u.index !== '';
    if (hasData || hasIndex) {
      if (typeof u.data !== 'string' || !hasData) fail('"upper.data" must be a non-empty string (the writable data file)');
      if (typeof u.index !== 'string' || !hasIndex) fail('"upper.index" must be a non-empty string (the writable index file)');
      out.upper = { data: abs(u.data as string), index: abs(u.index as string) };
    }
  }
  if (out.lowers.length === 0 && !out.upper) fail('no layers: "lowers" is empty and there is no "upper"');
  return out;
}

/** Records the outcome of opening the device where the config asks for it. */
export async function writeResultFile(resultFile: string, error?: unknown): Promise<void> {
  const text = error === undefined ? 'success' : `failed:${error instanceof Error ? error.message : String(error)}`;
  await writeFile(resultFile, text);
}
