/**
 * The snapshotter's configuration: a TOML file (default /etc/dadi/snapshotter.toml, every key
 * optional), then command-line flags on top. `defaultConfig()` is what `dadi snapshotter
 * --print-config` prints, so the printed file is a complete, valid config.
 */
import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'smol-toml';
import { resolveCacheDir } from '../io/cache.ts';
import { p2pConfigFromTable, type P2PConfig } from '../p2p/config.ts';
import { parseSize } from '../util/size.ts';
import { parseHttpAddress } from './http-address.ts';
import { parseLayerSelector } from './snapshotter/layer-prefetch.ts';

export type RwMode = 'overlayfs' | 'dir' | 'dev';
export const RW_MODES: readonly RwMode[] = ['overlayfs', 'dir', 'dev'];

export interface Mirror {
  /** The registry as images name it: `docker.io`, `registry.example.com:5000`. */
  host: string;
  /**
   * Base URL of a mirror of that registry (`https://mirror.local`, `http://10.0.0.5:5000`): a
   * pull-through cache or P2P proxy. Blobs are read from the mirrors first, in the order listed,
   * falling back to the registry itself when a mirror fails or is slower than upstreamTimeoutMs.
   */
  endpoint: string;
}

export interface SnapshotterConfig {
  root: string;
  address: string;
  rwMode: RwMode;
  logLevel: string;
  cache: { dir: string; size: number; refillUnit: number };
  background: { enable: boolean; delaySeconds: number; bytesPerSecond: number };
  registry: { plainHttp: string[]; mirrors: Mirror[]; upstreamTimeoutMs: number };
  /** Virtual size (GiB) of a writable disk with nothing below it (overlaybd's default 64). */
  defaultVsizeGB: number;
  /** Read-ahead (KiB) of attached devices; -1 leaves the kernel's default. */
  readAheadKB: number;
  /** The P2P agent (the `[p2p]` table, see p2p/config.ts); absent: no agent. */
  p2p?: P2PConfig;
  /**
   * Where the daemon serves Prometheus metrics (`/metrics`) and the JSON status of its attached
   * images (`/status`): `HOST:PORT` or a unix socket path (see http-address.ts); '' = not served.
   */
  metricsAddress: string;
  /**
   * Whole-layer priority prefetch for images without a trace (snapshotter/layer-prefetch.ts):
   * `top-first`, `bottom-first`, a list of layers, or '' (off; a Prepare label may still ask).
   */
  prefetch: { layers: string };
}

export const DEFAULT_CONFIG_FILE = '/etc/dadi/snapshotter.toml';

export function defaultConfig(env: NodeJS.ProcessEnv = process.env): SnapshotterConfig {
  return {
    root: '/var/lib/containerd/io.containerd.snapshotter.v1.dadi',
    address: '/run/dadi-snapshotter/dadi.sock',
    rwMode: 'overlayfs',
    logLevel: 'info',
    cache: { dir: resolveCacheDir(undefined, env), size: 4 * 2 ** 30, refillUnit: 256 * 2 ** 10 },
    background: { enable: true, delaySeconds: 30, bytesPerSecond: 32 * 2 ** 20 },
    registry: { plainHttp: [], mirrors: [], upstreamTimeoutMs: 5000 },
    defaultVsizeGB: 64,
    readAheadKB: -1,
    metricsAddress: '',
    prefetch: { layers: '' },
  };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Reads typed keys out of one TOML table, refusing unknown keys (a typo must not pass silently). */
class Reader {
  constructor(private readonly file: string, private readonly where: string, private readonly t: Table) {}
  private name(key: string): string { return this.where ? `${this.where}.${key}` : key; }
  private fail(key: string, why: string): never {
    throw new ConfigError(`${this.file}: ${this.name(key)} ${why}`);
  }
  known(keys: readonly string[]): void {
    for (const k of Object.keys(this.t)) if (!keys.includes(k)) this.fail(k, `is not a known key (known here: ${keys.join(', ')})`);
  }
  string(key: string, into: (v: string) => void): void {
    const v = this.t[key];
    if (v === undefined) return;
    if (typeof v !== 'string' || v === '') this.fail(key, 'must be a non-empty string');
    into(v as string);
  }
  bool(key: string, into: (v: boolean) => void): void {
    const v = this.t[key];
    if (v === undefined) return;
    if (typeof v !== 'boolean') this.fail(key, 'must be true or false');
    into(v as boolean);
  }
  number(key: string, into: (v: number) => void): void {
    const v = this.t[key];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) this.fail(key, 'must be a non-negative number');
    into(v as number);
  }
  /** A size as a number of bytes or a string like "256K". */
  size(key: string, into: (v: number) => void): void {
    const v = this.t[key];
    if (v === undefined) return;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return into(v);
    if (typeof v !== 'string') this.fail(key, 'must be a size (bytes, or a string like "256K", "4G")');
    try {
      into(parseSize(v as string));
    } catch (err) {
      this.fail(key, (err as Error).message);
    }
  }
  table(key: string): Reader | undefined {
    const v = this.t[key];
    if (v === undefined) return undefined;
    if (!isTable(v)) this.fail(key, 'must be a table');
    return new Reader(this.file, this.name(key), v as Table);
  }
  array(key: string): unknown[] {
    const v = this.t[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(key, 'must be an array');
    return v as unknown[];
  }
  stringArray(key: string, into: (v: string[]) => void): void {
    const a = this.array(key);
    if (a.some((x) => typeof x !== 'string' || x === '')) this.fail(key, 'must be an array of non-empty strings');
    if (this.t[key] !== undefined) into(a as string[]);
  }
}

/** Applies a parsed TOML document onto `cfg`. */
export function applyToml(cfg: SnapshotterConfig, doc: Table, file: string): SnapshotterConfig {
  const r = new Reader(file, '', doc);
  r.known(['root', 'address', 'rwMode', 'logLevel', 'defaultVsizeGB', 'readAheadKB', 'metricsAddress', 'cache', 'background', 'registry', 'prefetch', 'p2p']);
  r.string('root', (v) => { cfg.root = v; });
  r.string('address', (v) => { cfg.address = v; });
  r.string('rwMode', (v) => {
    if (!RW_MODES.includes(v as RwMode)) throw new ConfigError(`${file}: rwMode is ${JSON.stringify(v)}; expected one of ${RW_MODES.join(', ')}`);
    cfg.rwMode = v as RwMode;
  });
  r.string('logLevel', (v) => {
    if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(v)) throw new ConfigError(`${file}: logLevel ${JSON.stringify(v)} is not a level (debug, info, warn, error)`);
    cfg.logLevel = v;
  });
  r.number('defaultVsizeGB', (v) => { cfg.defaultVsizeGB = v; });
  if (doc.readAheadKB !== undefined) {
    if (typeof doc.readAheadKB !== 'number' || !Number.isInteger(doc.readAheadKB) || doc.readAheadKB < -1) {
      throw new ConfigError(`${file}: readAheadKB must be a whole number of KiB, or -1 for the kernel's default`);
    }
    cfg.readAheadKB = doc.readAheadKB;
  }
  // '' is a value here (off), so these two do not go through Reader.string.
  if (doc.metricsAddress !== undefined) cfg.metricsAddress = checkMetricsAddress(doc.metricsAddress, file);
  const prefetch = r.table('prefetch');
  if (prefetch) {
    prefetch.known(['layers']);
    const v = (doc.prefetch as Table).layers;
    if (v !== undefined) cfg.prefetch.layers = checkPrefetchLayers(v, file);
  }
  const cache = r.table('cache');
  if (cache) {
    cache.known(['dir', 'size', 'refillUnit']);
    cache.string('dir', (v) => { cfg.cache.dir = v; });
    cache.size('size', (v) => { cfg.cache.size = v; });
    cache.size('refillUnit', (v) => {
      if (v < 512 || v % 512 !== 0) throw new ConfigError(`${file}: cache.refillUnit must be a multiple of 512 bytes, got ${v}`);
      cfg.cache.refillUnit = v;
    });
  }
  const bg = r.table('background');
  if (bg) {
    bg.known(['enable', 'delaySeconds', 'rate']);
    bg.bool('enable', (v) => { cfg.background.enable = v; });
    bg.number('delaySeconds', (v) => { cfg.background.delaySeconds = v; });
    bg.size('rate', (v) => { cfg.background.bytesPerSecond = v; });
  }
  const reg = r.table('registry');
  if (reg) {
    reg.known(['plainHttp', 'mirrors', 'upstreamTimeoutMs']);
    reg.number('upstreamTimeoutMs', (v) => {
      if (!(v > 0)) throw new ConfigError(`${file}: registry.upstreamTimeoutMs must be above zero`);
      cfg.registry.upstreamTimeoutMs = v;
    });
    reg.stringArray('plainHttp', (v) => { cfg.registry.plainHttp = v; });
    cfg.registry.mirrors = reg.array('mirrors').map((m, i) => {
      if (!isTable(m)) throw new ConfigError(`${file}: registry.mirrors[${i}] must be a table with host and endpoint`);
      const mr = new Reader(file, `registry.mirrors[${i}]`, m);
      mr.known(['host', 'endpoint']);
      const out: Mirror = { host: '', endpoint: '' };
      mr.string('host', (v) => { out.host = v; });
      mr.string('endpoint', (v) => {
        if (!/^https?:\/\/[^/]+\/?$/.test(v)) throw new ConfigError(`${file}: registry.mirrors[${i}].endpoint ${JSON.stringify(v)} must be http(s)://host[:port]`);
        out.endpoint = v.replace(/\/$/, '');
      });
      if (!out.host || !out.endpoint) throw new ConfigError(`${file}: registry.mirrors[${i}] needs both host and endpoint`);
      return out;
    });
  }
  return cfg;
}

/** A metrics address from a file or a flag: '' (off) or a parseable address. */
export function checkMetricsAddress(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new ConfigError(`${where}: metricsAddress must be a string (HOST:PORT or a socket path; "" = off)`);
  if (v === '') return v;
  try {
    parseHttpAddress(v);
  } catch (err) {
    throw new ConfigError(`${where}: metricsAddress: ${(err as Error).message}`);
  }
  return v;
}

/** A whole-layer prefetch selector from a file or a flag: '' (off) or a valid selector. */
export function checkPrefetchLayers(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new ConfigError(`${where}: prefetch.layers must be a string (top-first, bottom-first, a layer list; "" = off)`);
  try {
    parseLayerSelector(v);
  } catch (err) {
    throw new ConfigError(`${where}: ${(err as Error).message}`);
  }
  return v;
}

/**
 * The config from `file` (when given, it must exist; the default path may be absent) over the
 * defaults. `$DADI_CACHE_DIR` sets the default cache dir, as for every command.
 */
export async function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<SnapshotterConfig> {
  const cfg = defaultConfig(env);
  const path = file ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (file === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') return cfg;
    throw new ConfigError(`${path}: cannot read the config: ${(err as Error).message}`);
  }
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    throw new ConfigError(`${path}: not valid TOML: ${(err as Error).message}`);
  }
  applyToml(cfg, doc, path);
  if (doc.p2p !== undefined) {
    if (!isTable(doc.p2p)) throw new ConfigError(`${path}: p2p must be a table`);
    try {
      cfg.p2p = await p2pConfigFromTable(doc.p2p, path);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
  }
  return cfg;
}

/** The config as TOML, sizes in bytes (what --print-config shows). */
export function formatConfig(cfg: SnapshotterConfig): string {
  const doc = {
    root: cfg.root,
    address: cfg.address,
    rwMode: cfg.rwMode,
    logLevel: cfg.logLevel,
    defaultVsizeGB: cfg.defaultVsizeGB,
    readAheadKB: cfg.readAheadKB,
    metricsAddress: cfg.metricsAddress,
    cache: { dir: cfg.cache.dir, size: cfg.cache.size, refillUnit: cfg.cache.refillUnit },
    background: { enable: cfg.background.enable, delaySeconds: cfg.background.delaySeconds, rate: cfg.background.bytesPerSecond },
    registry: { plainHttp: cfg.registry.plainHttp, mirrors: cfg.registry.mirrors.map((m) => ({ ...m })), upstreamTimeoutMs: cfg.registry.upstreamTimeoutMs },
    prefetch: { layers: cfg.prefetch.layers },
    ...(cfg.p2p ? { p2p: { self: cfg.p2p.self, listen: cfg.p2p.listen, root: cfg.p2p.root, peers: cfg.p2p.members, fanout: cfg.p2p.fanout,
      timeoutMs: cfg.p2p.timeoutMs } } : {}), // the peer token is a secret: never printed
  };
  return stringify(doc) + '\n';
}
