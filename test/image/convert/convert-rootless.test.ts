/**
 * Conversion without privileges, and reproducibly: `dadi convert` run as `nobody` (setpriv) with a
 * PATH holding no tool at all (so no mount, nbdfuse, losetup or mkfs.ext4 can run) converts an
 * image using every tar feature (devices, setuid files, foreign owners, security.capability);
 * converting the same image again as root in another clean directory gives byte-identical blobs
 * and the same manifest digest, also for the generated stress image. Each converted stack is
 * e2fsck-clean, mounts as exactly GNU tar's extraction, and dadi's own reader (`dadi ls`,
 * `dadi cat-file`) sees the same tree as the kernel mount.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, requireSystem, runDadi } from '../../helpers/env.ts';
import { assertFsckClean } from '../../fs/ext4/support.ts';
import { stressLayers } from '../../fs/ext4/stress-layers.ts';
import { writeOciImage } from './image-build.ts';
import { baseLayer, middleLayer, topLayer } from './layers.ts';
import {
  assertNothingRunning, assertSameTree, convert, convertNeeds, convertScratch, mountedTree, outcomes, readConverted, referenceTree, summaryOf,
  type ConvertScratch,
} from './support.ts';

const NOBODY = 65534;
const needs = { ...convertNeeds, commands: [...convertNeeds.commands, 'setpriv', 'e2fsck'] };

/** `dadi convert` as nobody, with an empty PATH: nothing but node itself can run. */
function convertAsNobody(s: ConvertScratch, src: string, dst: string, cacheDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const empty = join(s.dir, 'empty-path');
    const setpriv = execFileSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).trim();
    const child = spawn(setpriv, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--',
      process.execPath, '--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), 'convert', src, dst, '--json', '--cache-dir', cacheDir], {
      cwd: repoRoot, env: { PATH: empty, HOME: join(s.dir, 'home'), TMPDIR: join(s.dir, 'nobody-tmp') }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** e2fsck -fn on the merged disk of the first 1..n layers. */
async function assertStacksClean(s: ConvertScratch, layerFiles: string[], name: string): Promise<void> {
  for (let n = 1; n <= layerFiles.length; n++) {
    const image = join(s.dir, `${name}-${n}.img`);
    const r = await runDadi(['cat', '-o', image, ...layerFiles.slice(0, n)]);
    assert.equal(r.code, 0, r.stderr);
    assertFsckClean(image);
    execFileSync('rm', ['-f', image]);
  }
}

/** dadi's reader against the kernel mount: every path with its type and mode; file contents spot-checked. */
async function assertReaderSeesTree(image: string, tree: Awaited<ReturnType<typeof mountedTree>>): Promise<void> {
  const ls = await runDadi(['ls', '-R', '--json', image, '/']);
  assert.equal(ls.code, 0, ls.stderr);
  const mine = new Map(ls.stdout.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { path: string; kind: string; mode: number; uid: number; size: number })
    .filter((e) => e.path !== '/lost+found' && !e.path.startsWith('/lost+found/')).map((e) => [e.path, e]));
  assert.deepEqual([...mine.keys()].sort(), [...tree.keys()].sort());
  const kinds: Record<string, string> = { file: 'file', directory: 'directory', symlink: 'symlink', char: 'character-device', block: 'block-device', fifo: 'fifo' };
  for (const [p, n] of tree) assert.deepEqual([mine.get(p)!.kind, mine.get(p)!.mode, mine.get(p)!.uid], [kinds[n.type], n.mode, n.uid], p);
  const files = [...tree.values()].filter((n) => n.type === 'file').slice(0, 20);
  for (const f of files) {
    const cat = await runDadi(['cat-file', image, f.path]);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(createHash('sha256').update(cat.stdout).digest('hex'), f.sha256, f.path);
  }
}

test('conversion as nobody with no tool on PATH (no FUSE, loop device or mount), reproducible across users and directories', { timeout: 600_000 }, async (t) => {
  if (!requireSystem(t, needs)) return;
  const s = await convertScratch(t);
  const tars = [await baseLayer(), middleLayer(), await topLayer()];
  const src = join(s.dir, 'src');
  await writeOciImage(src, 'v1', tars, ['gzip', 'zstd', 'none']);
  for (const d of ['empty-path', 'home', 'nobody-tmp', 'out-nobody', 'cache-nobody']) {
    await mkdir(join(s.dir, d));
    await chown(join(s.dir, d), NOBODY, NOBODY);
  }
  await chmod(s.dir, 0o755);
  execFileSync('chmod', ['-R', 'a+rX', src]);

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
  await assertStacksClean(s, img.layerFiles, 'features');
  const mounted = await mountedTree(s, img.layerFiles, 'nobody');
  assertSameTree(mounted, await referenceTree(s, tars, 'nobody'));
  await assertReaderSeesTree(`oci:${join(s.dir, 'out-nobody')}:obd`, mounted);
});

test('the stress image converts to the same manifest digest in two clean directories; e2fsck-clean; mounts as GNU tar\'s extraction', { timeout: 900_000 }, async (t) => {
  if (!requireSystem(t, needs)) return;
  const s = await convertScratch(t);
  const tars = await stressLayers();
  const src = join(s.dir, 'src');
  await writeOciImage(src, 'v1', tars, 'gzip');
  const runs = [];
  for (const n of [1, 2]) {
    const run = await convert(s, `oci:${src}:v1`, `oci:${join(s.dir, `out-${n}`)}:obd`, ['--cache-dir', join(s.dir, `cache-${n}`)]);
    assert.deepEqual(outcomes(run), ['converted', 'converted', 'converted']);
    runs.push(summaryOf(run));
  }
  assert.equal(runs[0]!.manifestDigest, runs[1]!.manifestDigest);
  assert.deepEqual(runs[0]!.layerDigests, runs[1]!.layerDigests);
  const img = await readConverted(join(s.dir, 'out-1'), 'obd');
  await assertStacksClean(s, img.layerFiles, 'stress');
  const mounted = await mountedTree(s, img.layerFiles, 'stress');
  assertSameTree(mounted, await referenceTree(s, tars, 'stress'));
  await assertReaderSeesTree(`oci:${join(s.dir, 'out-1')}:obd`, mounted);
});
