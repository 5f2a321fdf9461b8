/**
 * Conversion without privileges, and reproducibly: `dadi convert` run as `nobody` (setpriv) with a
 * PATH holding no tool at all (so no mount, nbdfuse, losetup or mkfs.ext4 can run) converts an
 * image using every tar feature (devices, setuid files, foreign owners, security.capability);
 * converting the same image again as root in another clean directory gives byte-identical blobs
 * and the same manifest digest; the same for the generated stress image (sparse and huge files,
 * thousands of names, deletions across layers). Each converted stack is
 * e2fsck-clean, mounts as exactly GNU tar's extraction, and dadi's own reader (`dadi ls`,
 * `dadi cat-file`) sees the same tree as the kernel mount.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot, requireSystem } from '../../helpers/env.ts';
import { stressLayers } from '../../fs/ext4/stress-layers.ts';
import { writeOciImage } from './image-build.ts';
import { baseLayer, middleLayer, topLayer } from './layers.ts';
import {
  assertNothingRunning, assertSameTree, convert, convertNeeds, convertScratch, mountedTree, outcomes, readConverted, referenceTree, summaryOf,
  type ConvertScratch,
} from './support.ts';
import { assertReaderSeesTree, assertStacksClean } from './userspace-checks.ts';

const NOBODY = 65534;
const needs = { ...convertNeeds, commands: [...convertNeeds.commands, 'setpriv', 'e2fsck'] };

/** `dadi convert` as nobody, with an empty PATH: nothing but node itself can run. */
async function convertAsNobody(s: ConvertScratch, src: string, dst: string, cacheDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const setpriv = execFileSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).trim();
  const argv = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--',
    process.execPath, '--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), 'convert', src, dst, '--json', '--cache-dir', cacheDir];
  const env = { PATH: join(s.dir, 'empty-path'), HOME: join(s.dir, 'home'), TMPDIR: join(s.dir, 'nobody-tmp') };
  try {
    const r = await promisify(execFile)(setpriv, argv, { cwd: repoRoot, env, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** Directories nobody may write (home, temp, outputs, caches), and the source readable by all. */
async function prepareForNobody(s: ConvertScratch, src: string, dirs: string[]): Promise<void> {
  for (const d of ['empty-path', 'home', 'nobody-tmp', ...dirs]) {
    await mkdir(join(s.dir, d));
    await chown(join(s.dir, d), NOBODY, NOBODY);
  }
  await chmod(s.dir, 0o755);
  execFileSync('chmod', ['-R', 'a+rX', src]);
}

test('conversion as nobody with no tool on PATH (no FUSE, loop device or mount), reproducible across users and directories', { timeout: 600_000 }, async (t) => {
  if (!requireSystem(t, needs)) return;
  const s = await convertScratch(t);
  const tars = [await baseLayer(), middleLayer(), await topLayer()];
  const src = join(s.dir, 'src');
  await writeOciImage(src, 'v1', tars, ['gzip', 'zstd', 'none']);
  await prepareForNobody(s, src, ['out-nobody', 'cache-nobody']);

  const run = await convertAsNobody(s, `oci:${src}:v1`, `oci:${join(s.dir, 'out-nobody')}:obd`, join(s.dir, 'cache-nobody'));
  assert.equal(run.code, 0, run.stderr);
  const events = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: string; manifestDigest?: string; layerDigests?: string[] });
  assert.ok(!events.some((e) => e.step === 'mount' || e.step === 'unmount'));
  const byNobody = events.at(-1)!;
  await assertNothingRunning(s.dir);

  // Root, another clean directory and cache: the same bytes.
  const again = summaryOf(await convert(s, `oci:${src}:v1`, `oci:${join(s.dir, 'out-root')}:obd`));
  assert.deepEqual([again.manifestDigest, again.layerDigests], [byNobody.manifestDigest, byNobody.layerDigests]);

  const img = await readConverted(join(s.dir, 'out-nobody'), 'obd');
  await assertStacksClean(s.dir, img.layerFiles, 'features');
  const mounted = await mountedTree(s, img.layerFiles, 'nobody');
  assertSameTree(mounted, await referenceTree(s, tars, 'nobody'));
  await assertReaderSeesTree(img.layerFiles, `oci:${join(s.dir, 'out-nobody')}:obd`, mounted);
});

test('the stress image converts as nobody and as root, in two clean directories, to the same manifest digest; e2fsck-clean; mounts as GNU tar\'s extraction', { timeout: 900_000 }, async (t) => {
  if (!requireSystem(t, needs)) return;
  const s = await convertScratch(t);
  const tars = await stressLayers();
  const src = join(s.dir, 'src');
  await writeOciImage(src, 'v1', tars, 'gzip');
  await prepareForNobody(s, src, ['out-1', 'cache-1']);
  const first = await convertAsNobody(s, `oci:${src}:v1`, `oci:${join(s.dir, 'out-1')}:obd`, join(s.dir, 'cache-1'));
  assert.equal(first.code, 0, first.stderr);
  const byNobody = JSON.parse(first.stdout.trim().split('\n').at(-1)!) as { manifestDigest: string; layerDigests: string[] };
  const run = await convert(s, `oci:${src}:v1`, `oci:${join(s.dir, 'out-2')}:obd`, ['--cache-dir', join(s.dir, 'cache-2')]);
  assert.deepEqual(outcomes(run), ['converted', 'converted', 'converted']);
  assert.deepEqual([summaryOf(run).manifestDigest, summaryOf(run).layerDigests], [byNobody.manifestDigest, byNobody.layerDigests]);
  const img = await readConverted(join(s.dir, 'out-1'), 'obd');
  await assertStacksClean(s.dir, img.layerFiles, 'stress');
  const mounted = await mountedTree(s, img.layerFiles, 'stress');
  assertSameTree(mounted, await referenceTree(s, tars, 'stress'));
  await assertReaderSeesTree(img.layerFiles, `oci:${join(s.dir, 'out-1')}:obd`, mounted);
});
