/**
 * `npx dadi demo` runs the compiled CLI (npm ci builds dist/), where no .ts file exists: the
 * demo must still find a CLI to run the converter's `dadi serve` with. Built into a temporary
 * directory (never the shared dist/), with node_modules linked beside it for package resolution.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, requireSystem, tempDir } from '../helpers/env.ts';

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

test('the compiled CLI runs the demo through conversion and lazy attach', { timeout: 240_000 }, async (t) => {
  if (!requireSystem(t, { root: true, commands: ['nbdfuse', 'mkfs.ext4', 'losetup', 'fusermount3', 'mount'], paths: ['/dev/fuse'] })) return;
  const out = await tempDir(t, 'dadi-demo-build-');
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = await run([process.execPath, tsc, '-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', out, '--sourceMap', 'false']);
  assert.equal(built.code, 0, built.stdout + built.stderr);
  await symlink(join(repoRoot, 'node_modules'), join(out, 'node_modules'));
  const tmp = await tempDir(t, 'dadi-demo-test-');
  const r = await run([process.execPath, join(out, 'cli', 'main.js'), 'demo', '--json', '--no-mount', '--binary-size', '2M'], { TMPDIR: tmp });
  assert.equal(r.code, 0, r.stderr);
  const steps = r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { step: string }).step);
  assert.deepEqual(steps, ['registry', 'build', 'convert-layer', 'convert-layer', 'convert-layer', 'convert',
    'attach', 'skipped', 'superblock', 'fetched', 'cleanup', 'done']);
});
