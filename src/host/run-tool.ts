/**
 * Runs the host tools the attach and mount steps drive (losetup, mount, fusermount3, nbd-client)
 * with a deadline, and turns a failure into an error that names the step and quotes the tool's
 * stderr — the only clue a user gets when the kernel refuses something.
 */
import { spawn } from 'node:child_process';

export class HostStepError extends Error {
  override readonly name = 'HostStepError';
  constructor(readonly step: string, message: string, readonly stderr = '') {
    super(`${step}: ${message}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
  }
}

export interface ToolResult { code: number | null; stdout: string; stderr: string; timedOut: boolean }

/** Runs `argv` to completion (or until `timeoutMs`), never throwing for a non-zero exit. */
export function runTool(argv: readonly string[], timeoutMs = 30_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + err.message, timedOut });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** Runs `argv` and returns its stdout; any failure becomes a HostStepError naming `step`. */
export async function runStep(step: string, argv: readonly string[], timeoutMs = 30_000): Promise<string> {
  const r = await runTool(argv, timeoutMs);
  if (r.timedOut) throw new HostStepError(step, `${argv.join(' ')} did not finish within ${timeoutMs} ms`, r.stderr);
  if (r.code !== 0) throw new HostStepError(step, `${argv.join(' ')} failed (exit ${r.code ?? 'signal'})`, r.stderr);
  return r.stdout;
}

/** Polls `probe` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
