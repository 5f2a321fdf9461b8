/**
 * The command-line options every command that attaches a registry image shares (`dadi serve`,
 * `dadi mount`), their parsing into RemoteImageOptions, and their re-emission for the server
 * process `dadi mount` starts, so both commands spell and mean them the same way. Commands
 * import this when registering, so everything heavier is imported only when an image is opened.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import type { RemoteImageOptions } from '../image/remote.ts';

export interface RemoteFlags {
  cacheDir?: string;
  cacheSize?: string;
  insecure?: boolean;
  platform?: string;
  refillUnit?: string;
  /** commander's `--no-background` sets this false. */
  background?: boolean;
  backgroundDelay?: string;
  backgroundRate?: string;
  mirror?: string[];
  upstreamTimeout?: string;
  p2pConfig?: string;
}

export function addRemoteOptions(cmd: Command): Command {
  return cmd
    .option('--cache-dir <dir>', 'block cache for registry images (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--cache-size <size>', 'cap on the cache\'s disk use; least recently used whole blobs are evicted (default 4G)')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from an image index (default: this machine)')
    .option('--refill-unit <size>', 'cache refill unit, default 256K (a blob cached with another unit is fetched again)')
    .option('--no-background', 'do not download whole layers in the background after attach')
    .option('--background-delay <seconds>', 'start the background download this long after attach', '30')
    .option('--background-rate <size>', 'background download bandwidth per second for the image (0: unlimited)', '32M')
    .option('--mirror <registry=url>', 'read blobs of REGISTRY from this mirror first (a pull-through cache, a P2P proxy); repeat for more, tried in order, the registry last',
      (v: string, prev: string[] = []) => [...prev, v])
    .option('--upstream-timeout <ms>', 'a mirror or peer slower than this is skipped for the next one', '5000')
    .option('--p2p-config <file>', 'run a P2P agent (TOML with a [p2p] table: self, root, peers or peersFile, fanout, tokenFile) and read blobs through the tree first');
}

function nonNegative(flag: string, text: string, parse: (s: string) => number): number {
  const n = parse(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} ${text}: expected a non-negative number`);
  return n;
}

function positiveSize(flag: string, text: string, parse: (s: string) => number): number {
  const n = nonNegative(flag, text, parse);
  if (n === 0) throw new Error(`${flag} ${text}: expected a size above zero`);
  return n;
}

export async function remoteImageOptions(flags: RemoteFlags): Promise<RemoteImageOptions> {
  const { parsePlatform } = await import('../registry/manifests.ts');
  const { parseSize } = await import('../util/size.ts');
  const { parseMirror } = await import('../image/remote/mirrors.ts');
  const mirrors = (flags.mirror ?? []).map(parseMirror);
  return {
    ...(mirrors.length > 0 ? { mirrors } : {}),
    ...(flags.upstreamTimeout ? { upstreamTimeoutMs: positiveSize('--upstream-timeout', flags.upstreamTimeout, Number) } : {}),
    ...(flags.insecure ? { insecure: true } : {}),
    ...(flags.cacheDir ? { cacheDir: resolve(flags.cacheDir) } : {}),
    ...(flags.cacheSize ? { cacheCapacity: positiveSize('--cache-size', flags.cacheSize, parseSize) } : {}),
    ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
    ...(flags.refillUnit ? { refillUnit: parseSize(flags.refillUnit) } : {}),
    background: {
      enable: flags.background !== false,
      delayMs: nonNegative('--background-delay', flags.backgroundDelay ?? '30', Number) * 1000,
      maxBytesPerSec: nonNegative('--background-rate', flags.backgroundRate ?? '32M', parseSize),
    },
  };
}

/** The same flags as arguments for a child `dadi serve` (paths made absolute). */
export function remoteFlagArgs(flags: RemoteFlags): string[] {
  return [
    ...(flags.cacheDir ? ['--cache-dir', resolve(flags.cacheDir)] : []),
    ...(flags.cacheSize ? ['--cache-size', flags.cacheSize] : []),
    ...(flags.insecure ? ['--insecure'] : []),
    ...(flags.platform ? ['--platform', flags.platform] : []),
    ...(flags.refillUnit ? ['--refill-unit', flags.refillUnit] : []),
    ...(flags.background === false ? ['--no-background'] : []),
    ...(flags.backgroundDelay ? ['--background-delay', flags.backgroundDelay] : []),
    ...(flags.backgroundRate ? ['--background-rate', flags.backgroundRate] : []),
    ...(flags.mirror ?? []).flatMap((m) => ['--mirror', m]),
    ...(flags.upstreamTimeout ? ['--upstream-timeout', flags.upstreamTimeout] : []),
    ...(flags.p2pConfig ? ['--p2p-config', resolve(flags.p2pConfig)] : []),
  ];
}

/**
 * With --p2p-config, starts the host's P2P agent and returns the options that make the image use
 * its cache, client and tree route; `close` stops it after the image is closed.
 */
export async function withP2P(flags: RemoteFlags, opts: RemoteImageOptions): Promise<{ opts: RemoteImageOptions; close: () => Promise<void> }> {
  if (!flags.p2pConfig) return { opts, close: async () => {} };
  const { loadP2PConfig } = await import('../p2p/config.ts');
  const { startP2PHost } = await import('../p2p/host.ts');
  const host = await startP2PHost(await loadP2PConfig(resolve(flags.p2pConfig)), {
    ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
    ...(opts.cacheCapacity ? { cacheCapacity: opts.cacheCapacity } : {}),
    ...(opts.refillUnit ? { refillUnit: opts.refillUnit } : {}),
    client: { ...(opts.insecure ? { insecure: true } : {}), ...(opts.platform ? { platform: opts.platform } : {}) },
  });
  return { opts: { ...opts, cache: host.cache, client: host.client, routes: [host.agent.route] }, close: () => host.close() };
}

export { pickRemoteImage } from '../image/remote/reference.ts';
