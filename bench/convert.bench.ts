/**
 * `dadi convert` of the Debian-based bench/app image (3 gzip layers, ~65 MB compressed, ~176 MB of
 * tar; built by /work/shared/bench/make-images.sh into $BENCH_CACHE/oci): wall time, throughput
 * over the uncompressed tar bytes, and the converted (lz4 ZFile) size next to the gzip OCI size.
 * Peer in the same run: GNU tar unpacking the same layers into a directory (what an overlayfs
 * snapshotter does on pull). The reference user-space convertor converts about 50 MB/s on its
 * authors' hardware (not this machine).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertImage } from '../src/image/convert/index.ts';
import type { BenchRow } from './run.ts';

const CACHE = process.env.BENCH_CACHE ?? '/var/cache/dadi-bench';
const LAYOUT = join(CACHE, 'oci');

interface ImagesJson { app: { layers: Array<{ tar: string; compressed: number; uncompressed: number }> } }

async function ensureImages(): Promise<ImagesJson> {
  const file = join(CACHE, 'images.json');
  if (!existsSync(file)) {
    const script = join(process.env.DADI_SHARED ?? '/work/shared', 'bench', 'make-images.sh');
    const r = spawnSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, BENCH_CACHE: CACHE } });
    if (r.status !== 0) throw new Error(`${script} failed (status ${r.status})`);
  }
  return JSON.parse(await readFile(file, 'utf8')) as ImagesJson;
}

/** GNU tar unpacking each gzip layer in turn (whiteouts are few in this image; tar alone is the cost). */
function tarUnpack(dir: string, layers: string[]): number {
  const t0 = performance.now();
  for (const l of layers) execFileSync('tar', ['-C', dir, '-xzpf', l, '--numeric-owner', '--xattrs', '--xattrs-include=*'], { stdio: 'ignore' });
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<BenchRow[]> {
  const images = await ensureImages();
  const work = await mkdtemp(join(tmpdir(), 'dadi-bench-convert-'));
  try {
    const manifest = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${LAYOUT}:app`], { encoding: 'utf8' })) as { layers: Array<{ digest: string; size: number }> };
    const gzipBytes = manifest.layers.reduce((n, l) => n + l.size, 0);
    const tarBytes = images.app.layers.reduce((n, l) => n + l.uncompressed, 0);
    const rows: BenchRow[] = [];
    for (const compress of ['lz4', 'zstd'] as const) {
      const cacheDir = join(work, `cache-${compress}`);
      const t0 = performance.now();
      const summary = await convertImage({ src: `oci:${LAYOUT}:app`, dst: `oci:${join(work, `out-${compress}`)}:app`, compress, cacheDir, tmpDir: work });
      const seconds = (performance.now() - t0) / 1000;
      // Peer, interleaved on the same machine state.
      const unpackDir = join(work, `unpack-${compress}`);
      await mkdir(unpackDir);
      const tarSeconds = tarUnpack(unpackDir, manifest.layers.map((l) => join(LAYOUT, 'blobs', 'sha256', l.digest.slice(7))));
      await rm(unpackDir, { recursive: true, force: true });
      rows.push(
        { name: `convert bench/app (${compress}), 3 layers`, value: seconds, unit: 's', lowerIsBetter: true,
          peer: { name: 'GNU tar -xz of the layers', value: tarSeconds } },
        { name: `convert bench/app (${compress}) throughput`, value: tarBytes / 1e6 / seconds, unit: 'MB/s of tar',
          peer: { name: 'GNU tar -xz', value: tarBytes / 1e6 / tarSeconds }, note: 'reference convertor: ~50 MB/s on its authors\' hardware' },
        { name: `converted size (${compress}) vs gzip OCI`, value: summary.bytesOut / 1e6, unit: 'MB', lowerIsBetter: true,
          peer: { name: 'gzip OCI layers', value: gzipBytes / 1e6 } },
      );
    }
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
