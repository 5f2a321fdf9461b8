/**
 * `dadi image info REF`: attach a dadi image lazily (manifest, config, each layer's headers and
 * index) and report what it is and what attaching it cost, without reading any disk data.
 */
import type { Command } from 'commander';

interface InfoOptions {
  json?: boolean;
  insecure?: boolean;
  cacheDir?: string;
  platform?: string;
  refillUnit?: string;
}

export function register(program: Command): void {
  const image = program.commands.find((c) => c.name() === 'image') ?? program.command('image').description('inspect and copy dadi (overlaybd) images');
  image
    .command('info')
    .description('layers, sizes, annotations, and the bytes fetched to attach a dadi image')
    .argument('<image>', 'registry reference (host[:port]/repo[:tag][@sha256:...]) or oci:DIR[:TAG]')
    .option('--json', 'print one JSON object')
    .option('--insecure', 'plain HTTP to the registry (loopback registries use it anyway)')
    .option('--cache-dir <dir>', 'block cache directory (default $DADI_CACHE_DIR, else ~/.cache/dadi, /var/cache/dadi for root)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from an image index (default: this machine)')
    .option('--refill-unit <size>', 'cache refill unit, default 256K (a blob cached with another unit is fetched again)')
    .addHelpText('after', [
      '',
      'Examples:',
      '  dadi image info 127.0.0.1:5000/app:v1-obd',
      '  dadi image info --json --cache-dir /var/cache/dadi registry.example.com/team/app@sha256:...',
    ].join('\n'))
    .action(async (ref: string, opts: InfoOptions) => {
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
