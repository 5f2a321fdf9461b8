/**
 * `dadi convert SRC DST`: an OCI/Docker image (registry reference or oci:DIR[:TAG]) into a
 * native overlaybd image pushed to DST. Progress: bars per layer on a TTY (--progress), one JSON
 * line per step (--json), and a summary at the end.
 */
import type { Command } from 'commander';
import type { ConvertEvent } from '../../image/convert/index.ts';
import { formatSize } from '../../util/size.ts';

interface LayerBars { update(e: ConvertEvent): void; stop(): void }

/** One cli-progress bar per layer on stderr, in compressed source bytes, with the layer's step. */
async function layerBars(): Promise<LayerBars> {
  const { MultiBar, Presets } = await import('cli-progress');
  const multi = new MultiBar({
    // Sized to fit an 80-column terminal: cli-progress cuts longer lines at the terminal's width.
    stream: process.stderr, hideCursor: true, clearOnComplete: false, autopadding: true, barsize: 24,
    format: ' layer {layer} |{bar}| {percentage}% | {step} {info}',
  }, Presets.shades_classic);
  const bars = new Map<number, ReturnType<InstanceType<typeof MultiBar>['create']>>();
  let stopped = false;
  const bar = (layer: number, size: number) => {
    let b = bars.get(layer);
    if (!b) {
      b = multi.create(Math.max(1, size), 0, { layer, step: 'waiting', info: '' });
      bars.set(layer, b);
    }
    return b;
  };
  return {
    update(e) {
      if (e.step === 'resolve' || e.step === 'manifest') return;
      if (e.step === 'progress') { bar(e.layer, e.size).update(e.bytes); return; }
      if (e.step === 'layer-done') {
        bar(e.layer, e.size).update(Math.max(1, e.size), { step: e.how, info: `${e.blobDigest.slice(7, 19)} ${formatSize(e.blobSize)} ${e.seconds.toFixed(1)} s` });
        return;
      }
      bar(e.layer, e.size).update({ step: e.step });
    },
    stop() {
      if (!stopped) multi.stop();
      stopped = true;
    },
  };
}

interface ConvertCliOptions {
  compress: string;
  blockSize: string;
  vsize: string;
  progress?: boolean;
  json?: boolean;
  insecure?: boolean;
  cacheDir?: string;
  platform?: string;
  kernel?: boolean;
}

export function register(program: Command): void {
  program
    .command('convert')
    .description('convert an OCI image into a dadi (overlaybd) image and push it to DST')
    .argument('<src>', 'source image: registry reference (host[:port]/repo:tag or @sha256:...) or oci:DIR[:TAG]')
    .argument('<dst>', 'destination: registry reference (a tag) or oci:DIR[:TAG]')
    .option('--compress <algo>', 'ZFile compression of the layers: lz4, zstd, or none (plain overlaybd layers)', 'lz4')
    .option('--block-size <size>', 'ZFile block size: 4K, 8K, 16K, 32K or 64K', '4K')
    .option('--vsize <size>', 'virtual size of the image\'s block device', '64G')
    .option('--progress', 'show a progress bar per layer (on a terminal)')
    .option('--json', 'print one JSON line per step, then the summary as JSON')
    .option('--insecure', 'plain HTTP to the registries (loopback registries use it anyway)')
    .option('--cache-dir <dir>', 'where conversions are recorded for reuse (default $DADI_CACHE_DIR, else the per-user cache)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform source (default: this host\'s)')
    .option('--kernel', 'apply layers through a kernel ext4 mount (root, FUSE, loop devices; digests differ per run) instead of the userspace writer')
    .addHelpText('after', [
      '',
      'Each layer is applied to the ext4 file system of the stacked image by dadi\'s userspace ext4',
      'writer: no root, FUSE, loop device or mount, and the same image converts to the same blobs and',
      'manifest digest on every run and machine (a blob DST already holds is not uploaded again).',
      'With --kernel, layers are applied through a real ext4 mount instead (needs root, /dev/fuse or',
      'the nbd module, mkfs.ext4 and mount). Layers converted before with the same settings (recorded',
      'by chainID in the cache directory) are reused from DST, or mounted from another repository of',
      'the same registry.',
      '',
      'Examples:',
      '  dadi convert 127.0.0.1:5000/library/app:1 127.0.0.1:5000/library/app:1-obd --progress',
      '  dadi convert oci:/srv/images/app:1 oci:/srv/images/app-obd:1 --compress zstd --json',
    ].join('\n'))
    .action(async (src: string, dst: string, opts: ConvertCliOptions) => {
      const { parseSize, formatSize } = await import('../../util/size.ts');
      const { resolveCacheDir } = await import('../../io/cache.ts');
      const { parsePlatform } = await import('../../registry/manifests.ts');
      const { convertImage } = await import('../../image/convert/index.ts');
      if (opts.compress !== 'lz4' && opts.compress !== 'zstd' && opts.compress !== 'none') throw new Error(`--compress must be lz4, zstd or none, got ${opts.compress}`);
      const blockSize = parseSize(opts.blockSize);
      if (![4096, 8192, 16384, 32768, 65536].includes(blockSize)) throw new Error(`--block-size must be 4K, 8K, 16K, 32K or 64K, got ${opts.blockSize}`);
      const vsize = parseSize(opts.vsize);
      const bars = opts.progress && process.stderr.isTTY && !opts.json ? await layerBars() : undefined;
      try {
        const summary = await convertImage({
          src, dst, compress: opts.compress, blockSize, vsize, insecure: opts.insecure ?? false, kernel: opts.kernel ?? false,
          cacheDir: resolveCacheDir(opts.cacheDir),
          ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
          onEvent: (e) => {
            if (opts.json) {
              if (e.step !== 'progress') process.stdout.write(JSON.stringify(e) + '\n');
            } else bars?.update(e);
          },
        });
        bars?.stop();
        if (opts.json) {
          process.stdout.write(JSON.stringify({ step: 'summary', ...summary }) + '\n');
        } else {
          const mbps = summary.seconds > 0 ? summary.bytesIn / 1e6 / summary.seconds : 0;
          process.stdout.write(`converted ${src} -> ${dst} (${summary.manifestDigest})\n`
            + `  layers: ${summary.layers} (${summary.reusedLayers} reused)\n`
            + `  bytes in: ${formatSize(summary.bytesIn)}, bytes out: ${formatSize(summary.bytesOut)}\n`
            + `  time: ${summary.seconds.toFixed(1)} s (${mbps.toFixed(1)} MB/s of source layers)\n`);
        }
      } finally {
        bars?.stop();
      }
    });
}
