/**
 * The images built from real Debian packages by /work/shared/bench/make-images.sh (bench/tiny:
 * busybox, one layer; bench/app: bookworm minbase + python3 + an app, three gzip layers, 176 MB of
 * tar), converted, mounted and compared whole with GNU tar's extraction of the same layers, each
 * layer stack checked by e2fsck and read back through dadi's userspace reader. The
 * script's output is cached in $BENCH_CACHE (reruns take seconds; the first build needs a Debian
 * mirror and about two minutes).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { OciLayout } from '../../../src/image/oci-layout.ts';
import { requireSystem, sharedDir } from '../../helpers/env.ts';
import { freePort } from '../../helpers/registry.ts';
import {
  assertConformant, assertNothingRunning, assertSameTree, convert, convertNeeds, convertScratch, mountedTree, outcomes,
  readConverted, referenceTree, summaryOf,
} from './support.ts';
import { assertReaderSeesTree, assertStacksClean } from './userspace-checks.ts';

const BENCH_CACHE = process.env.BENCH_CACHE ?? '/var/cache/dadi-bench';
const LAYOUT = join(BENCH_CACHE, 'oci');
const AMD64 = { os: 'linux', architecture: 'amd64' };

const needs = {
  ...convertNeeds,
  commands: [...convertNeeds.commands, 'debootstrap', 'pigz', 'skopeo', 'docker-registry', 'python3', 'jq', 'curl'],
  paths: [...convertNeeds.paths, '/bin/busybox'],
};

/**
 * Builds the images once (debootstrap from the Debian archive: ~45 MB of packages downloaded,
 * ~750 MB under BENCH_CACHE, a minute or two). The script pushes them to a registry it starts on
 * REG_ADDR: a free port here, not its fixed default, and its run directory is removed after.
 */
async function ensureImages(): Promise<void> {
  if (existsSync(join(BENCH_CACHE, 'images.json')) && existsSync(join(LAYOUT, 'index.json'))) return;
  const script = join(sharedDir, 'bench', 'make-images.sh');
  const REG_ADDR = `127.0.0.1:${await freePort()}`;
  try {
    const r = spawnSync('bash', [script], { encoding: 'utf8', env: { ...process.env, BENCH_CACHE, REG_ADDR }, stdio: ['ignore', 'ignore', 'pipe'] });
    assert.equal(r.status, 0, `${script} failed: ${r.stderr.slice(-3000)}`);
  } finally {
    await rm('/tmp/dadi-bench-reg-main', { recursive: true, force: true });
  }
}

// Generous timeouts: on a fresh machine the first test also builds the images (debootstrap).
for (const tag of ['tiny', 'app']) {
  test(`bench/${tag} from Debian packages: the converted image mounts as exactly GNU tar's extraction`, { timeout: 600_000 }, async (t) => {
    if (!requireSystem(t, needs)) return;
    await ensureImages();
    const s = await convertScratch(t);
    const src = await new OciLayout(LAYOUT).resolve(tag, AMD64);
    const dst = join(s.dir, 'dst');
    const run = await convert(s, `oci:${LAYOUT}:${tag}`, `oci:${dst}:${tag}`);
    const sum = summaryOf(run);
    assert.deepEqual(outcomes(run), src.json.layers.map(() => 'converted'));
    assert.equal(sum.bytesIn, src.json.layers.reduce((n, l) => n + l.size, 0));
    await assertNothingRunning(s.dir);

    const img = await readConverted(dst, tag);
    const layout = new OciLayout(LAYOUT);
    const config = JSON.parse((await layout.readBlob(src.json.config.digest)).toString('utf8')) as { rootfs: { diff_ids: string[] } };
    // Decompressing bench/app's 100 MB only to check CRCs costs more than it proves: the mount
    // below reads every file through them, and the small images check the decompression.
    await assertConformant(s, img, config.rootfs.diff_ids, { vsize: 64 * 2 ** 30, algo: 'lz4', decompress: tag === 'tiny' });
    // GNU tar reads the gzip layers as they are in the layout.
    const layers = await Promise.all(src.json.layers.map((l) => readFile(layout.blobPath(l.digest))));
    const mounted = await mountedTree(s, img.layerFiles, tag);
    assertSameTree(mounted, await referenceTree(s, layers, tag));
    // Converted rootless by the userspace writer: clean after every layer, and readable without a mount.
    await assertStacksClean(s.dir, img.layerFiles, tag);
    await assertReaderSeesTree(img.layerFiles, `oci:${dst}:${tag}`, mounted);
  });
}
