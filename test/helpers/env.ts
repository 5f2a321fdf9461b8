/**
 * Shared test plumbing: where the shared vectors live, how to run the CLI from source, and the
 * rule for system prerequisites (with DADI_SYSTEM_TESTS=1 a missing tool fails, never skips).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = process.env.DADI_SHARED ?? resolve(repoRoot, '..', 'shared');
export const vectorsDir = join(sharedDir, 'vectors', 'overlaybd');
export const systemTests = process.env.DADI_SYSTEM_TESTS === '1';

export function vector(name: string): string {
  return join(vectorsDir, name);
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Returns true when every prerequisite holds. Otherwise skips the test, or, under
 * DADI_SYSTEM_TESTS=1, fails it, naming what is missing.
 */
export function requireSystem(t: TestContext, needs: { commands?: string[]; root?: boolean; paths?: string[] }): boolean {
  const missing: string[] = [];
  for (const c of needs.commands ?? []) if (!hasCommand(c)) missing.push(`command ${c}`);
  if (needs.root && process.getuid?.() !== 0) missing.push('root');
  for (const p of needs.paths ?? []) {
    if (spawnSync('test', ['-e', p]).status !== 0) missing.push(p);
  }
  if (missing.length === 0) return true;
  const why = `missing prerequisite: ${missing.join(', ')}`;
  if (systemTests) throw new Error(`${why} (DADI_SYSTEM_TESTS=1 makes this a failure)`);
  t.skip(why);
  return false;
}

/** A temporary directory removed after the test. */
export async function tempDir(t: TestContext, prefix = 'dadi-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunResult { code: number | null; stdout: Buffer; stderr: string }

/** Runs the dadi CLI from source, as a user would, and collects its output. */
export function runDadi(args: string[], opts: { input?: Uint8Array; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), ...args], {
      cwd: opts.cwd ?? repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout: Buffer.concat(out), stderr: err }));
    if (opts.input) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** The command line that starts the CLI from source, for tests that manage the process themselves. */
export function dadiArgv(args: string[]): [string, string[]] {
  return [process.execPath, ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), ...args]];
}
