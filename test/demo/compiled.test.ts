/**
 * `npx dadi demo` runs the compiled CLI (npm ci builds dist/), where no .ts file exists: the
 * demo must still find a CLI to run the converter's `dadi serve` with. Built into a temporary
 * directory (never the shared dist/), with node_modules linked beside it for package resolution.
 * The run also covers --no-mount (the skip, and the superblock read through the lazy disk
 * instead) and --keep.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatEvent } from '../../src/demo/report.ts';
import { repoRoot, requireSystem, tempDir } from '../helpers/env.ts';
import { assertNothingLeft, demoTmp, events, find, PRIVILEGED, SMALL } from './support.ts';

function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('the compiled CLI runs the demo through conversion and lazy attach; --no-mount lists and reads through the userspace ext4 reader instead; --keep keeps the directory', { timeout: 240_000 }, async (t) => {
  if (!requireSystem(t, PRIVILEGED)) return;
  const out = await tempDir(t, 'dadi-demo-build-');
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = await run([process.execPath, tsc, '-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', out, '--sourceMap', 'false']);
  assert.equal(built.code, 0, built.stdout + built.stderr);
  await symlink(join(repoRoot, 'node_modules'), join(out, 'node_modules'));
  const tmp = await demoTmp(t);
  const r = await run([process.execPath, join(out, 'cli', 'main.js'), 'demo', '--json', '--no-mount', '--keep', ...SMALL], { TMPDIR: tmp });
  assert.equal(r.code, 0, r.stderr);
  const evs = events(Buffer.from(r.stdout));
  assert.deepEqual(evs.map((e) => e.step), ['registry', 'build', 'convert-layer', 'convert-layer', 'convert-layer', 'convert',
    'attach', 'skipped', 'list', 'read', 'fetched', 'cleanup', 'done']);
  const skipped = find(evs, 'skipped');
  assert.equal(skipped.what, 'mount');
  assert.equal(skipped.reason, '--no-mount was given; listing and reading through dadi\'s userspace ext4 reader instead');
  const list = find(evs, 'list');
  assert.deepEqual([list.via, list.matches], ['userspace', true], 'the tree read without a mount is the generated one');
  assert.equal(find(evs, 'read').matches, true);
  const fetched = find(evs, 'fetched');
  assert.ok(fetched.bytes < fetched.imageBytes, `fetched ${fetched.bytes} of ${fetched.imageBytes}`);
  assert.deepEqual(find(evs, 'done').skipped, [`mount: ${skipped.reason}`]);
  const cleanup = find(evs, 'cleanup');
  assert.ok(cleanup.kept?.startsWith(tmp), JSON.stringify(cleanup));
  assert.ok(!cleanup.undone.some((u) => u.startsWith('removed')), cleanup.undone.join(', '));
  assert.ok((await stat(join(cleanup.kept!, 'registry'))).isDirectory());
  await assertNothingLeft(tmp, { keptDir: cleanup.kept! });

  const log = evs.map((e) => formatEvent(e, 2)).join('\n');
  assert.match(log, /\] skipped +mount: --no-mount was given; listing and reading through dadi's userspace ext4 reader instead/);
  assert.match(log, /\] list +\d+ entries; \/ holds .* \(userspace ext4 reader, no mount\)/);
  assert.match(log, /kept \S+ \(--keep\): registry storage and caches/);
  assert.match(log, /\] done +every step that ran passed in [\d.]+ m?s; skipped mount/);
});
