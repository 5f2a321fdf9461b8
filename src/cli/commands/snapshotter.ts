/**
 * `dadi snapshotter [--config FILE] [--root DIR] [--address SOCKET]`: the containerd remote
 * snapshotter daemon (register it as `[proxy_plugins.dadi] type = "snapshot"`). Flags override
 * the config file; `--print-config` prints the effective config (the defaults, without a file)
 * as TOML and exits.
 */
import type { Command } from 'commander';

interface SnapshotterFlags {
  config?: string;
  root?: string;
  address?: string;
  cacheDir?: string;
  rwMode?: string;
  logLevel?: string;
  printConfig?: boolean;
  metricsAddress?: string;
  prefetchLayers?: string;
  readyFd?: string;
}

export function register(program: Command): void {
  program
    .command('snapshotter')
    .description('serve the containerd snapshots API for dadi images (lazy pull, ext4 over NBD) and ordinary images (overlayfs)')
    .option('--config <file>', 'TOML config (default /etc/dadi/snapshotter.toml when it exists)')
    .option('--root <dir>', 'snapshot root directory (metadata.db, snapshots/)')
    .option('--address <socket>', 'unix socket to serve on')
    .option('--cache-dir <dir>', 'block cache directory (default: config, else $DADI_CACHE_DIR, else /var/cache/dadi for root)')
    .option('--rw-mode <mode>', 'what a container on a dadi image writes to: overlayfs, dir or dev')
    .option('--log-level <level>', 'debug, info, warn or error')
    .option('--metrics-address <addr>', 'serve /metrics (Prometheus) and /status (attached images, JSON) on HOST:PORT or a unix socket path ("" = off, the default)')
    .option('--prefetch-layers <order>', 'prefetch whole layers of images without a trace: top-first, bottom-first, or a list (top,bottom,INDEX,DIGEST); none = off')
    .option('--print-config', 'print the effective config as TOML and exit')
    .option('--ready-fd <fd>', 'write "ready\\n" to this inherited file descriptor once serving')
    .addHelpText('after', [
      '',
      'containerd config.toml:',
      '  [proxy_plugins.dadi]',
      '    type = "snapshot"',
      '    address = "/run/dadi-snapshotter/dadi.sock"',
      '',
      'Examples:',
      '  dadi snapshotter --print-config > /etc/dadi/snapshotter.toml',
      '  dadi snapshotter --config /etc/dadi/snapshotter.toml',
      '  dadi snapshotter --metrics-address 127.0.0.1:9863   # curl 127.0.0.1:9863/metrics; dadi image info --daemon 127.0.0.1:9863',
    ].join('\n'))
    .action(async (flags: SnapshotterFlags) => {
      const { resolve } = await import('node:path');
      const { loadConfig, formatConfig, RW_MODES, checkMetricsAddress, checkPrefetchLayers } = await import('../../daemon/config.ts');
      const cfg = await loadConfig(flags.config);
      if (flags.root) cfg.root = resolve(flags.root);
      if (flags.address) cfg.address = resolve(flags.address);
      if (flags.cacheDir) cfg.cache.dir = resolve(flags.cacheDir);
      if (flags.rwMode) {
        if (!(RW_MODES as readonly string[]).includes(flags.rwMode)) throw new Error(`--rw-mode ${flags.rwMode}: expected one of ${RW_MODES.join(', ')}`);
        cfg.rwMode = flags.rwMode as typeof cfg.rwMode;
      }
      if (flags.logLevel) cfg.logLevel = flags.logLevel;
      if (flags.metricsAddress !== undefined) cfg.metricsAddress = checkMetricsAddress(flags.metricsAddress, '--metrics-address');
      if (flags.prefetchLayers !== undefined) cfg.prefetch.layers = checkPrefetchLayers(flags.prefetchLayers === 'none' ? '' : flags.prefetchLayers, '--prefetch-layers');
      if (flags.printConfig) {
        process.stdout.write(formatConfig(cfg));
        return;
      }
      const { log } = await import('../../util/log.ts');
      log.level = cfg.logLevel;
      const { startSnapshotter } = await import('../../daemon/snapshotter-daemon.ts');
      const running = await startSnapshotter(cfg);
      if (flags.readyFd !== undefined) {
        const { createWriteStream } = await import('node:fs');
        createWriteStream('', { fd: Number(flags.readyFd) }).end('ready\n');
      }
      await new Promise<void>((done) => {
        const stop = (signal: NodeJS.Signals): void => {
          log.info({ signal }, 'stopping');
          running.stop().then(done, (err: unknown) => {
            log.error({ err: (err as Error).message }, 'stopping failed');
            process.exitCode = 1;
            done();
          });
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
