/**
 * `dadi image info REF`: attach a dadi image lazily (manifest, config, each layer's headers and
 * index) and report what it is and what attaching it cost, without reading any disk data.
 * `dadi image info --daemon [ADDRESS] [REF]`: ask a running snapshotter instead, which images it
 * has attached and what their caches and prefetches (trace replay) did.
 */
import type { Command } from 'commander';

interface InfoOptions {
  json?: boolean;
  insecure?: boolean;
  cacheDir?: string;
  platform?: string;
  refillUnit?: string;
  daemon?: string | boolean;
  config?: string;
}

/** The daemon's status address: the flag's value, else the snapshotter config's metricsAddress. */
async function daemonAddress(opts: InfoOptions): Promise<string> {
  if (typeof opts.daemon === 'string' && opts.daemon !== '') return opts.daemon;
  const { loadConfig, DEFAULT_CONFIG_FILE } = await import('../../daemon/config.ts');
  const cfg = await loadConfig(opts.config);
  if (!cfg.metricsAddress) {
    throw new Error(`--daemon: no address given and ${opts.config ?? DEFAULT_CONFIG_FILE} sets no metricsAddress ` +
      '(start the snapshotter with --metrics-address ADDR, then pass --daemon ADDR)');
  }
  return cfg.metricsAddress;
}

async function daemonInfo(ref: string | undefined, opts: InfoOptions): Promise<void> {
  const { fetchDaemonStatus } = await import('../../daemon/status-client.ts');
  const { selectImages, formatDaemonImage } = await import('../daemon-status.ts');
  const address = await daemonAddress(opts);
  const status = await fetchDaemonStatus(address);
  const images = selectImages(status, ref);
  if (ref && images.length === 0) {
    const attached = status.images.map((i) => i.image);
    throw new Error(`${ref} is not attached by the snapshotter at ${address} (attached: ${attached.length > 0 ? attached.join(', ') : 'none'})`);
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(ref ? { images } : status)}\n`);
    return;
  }
  if (images.length === 0) process.stdout.write(`no image attached by the snapshotter at ${address}\n`);
  process.stdout.write(images.map(formatDaemonImage).join('\n'));
}

export function register(program: Command): void {
  const image = program.commands.find((c) => c.name() === 'image') ?? program.command('image').description('inspect and copy dadi (overlaybd) images');
  image
    .command('info')
    .description('layers, sizes, annotations, and the bytes fetched to attach a dadi image')
    .argument('[image]', 'registry reference (host[:port]/repo[:tag][@sha256:...]) or oci:DIR[:TAG]; with --daemon optional (all attached images)')
    .option('--json', 'print one JSON object')
    .option('--daemon [address]', 'ask the running snapshotter (its metricsAddress: HOST:PORT or socket path; default: the one in the snapshotter config) ' +
      'about the images it has attached: cache, verification and prefetch (trace replay) figures')
    .option('--config <file>', 'with --daemon and no address: the snapshotter config to read metricsAddress from (default /etc/dadi/snapshotter.toml)')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--cache-dir <dir>', 'block cache directory (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from an image index (default: this machine)')
    .option('--refill-unit <size>', 'cache refill unit, default 256K (a blob cached with another unit is fetched again)')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi image info 127.0.0.1:5000/app:v1-obd',
      '  dadi image info --json --cache-dir /var/cache/dadi registry.example.com/team/app@sha256:...',
      '  dadi image info --daemon 127.0.0.1:9863 registry.example.com/team/app:v1   # prefetch stats of an attached image',
    ].join('\n'))
    .action(async (ref: string | undefined, opts: InfoOptions) => {
      if (opts.daemon !== undefined) return daemonInfo(ref, opts);
      if (!ref) throw new Error('missing IMAGE (or pass --daemon to list the images a running snapshotter has attached)');
      const { openRemoteImage, formatImageInfo } = await import('../../image/remote.ts');
      const { parsePlatform } = await import('../../registry/manifests.ts');
      const { parseSize } = await import('../../util/size.ts');
      const img = await openRemoteImage(ref, {
        ...(opts.insecure ? { insecure: true } : {}),
        ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
        ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
        ...(opts.refillUnit ? { refillUnit: parseSize(opts.refillUnit) } : {}),
        background: { enable: false },
        statsIntervalMs: 0,
        logStatsOnClose: false,
      });
      try {
        const stats = img.stats();
        process.stdout.write(opts.json ? `${JSON.stringify({ ...img.info, stats })}\n` : formatImageInfo(img.info, stats));
      } finally {
        await img.close();
      }
    });
}
