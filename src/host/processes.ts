/**
 * The background processes a mount keeps running (the NBD server, nbdfuse): started detached so
 * they outlive `dadi mount`, and identified by pid plus kernel start time so that a later
 * `dadi umount` — or a stale record after a reboot — never signals an unrelated process that
 * happens to reuse the pid.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

export interface ProcessIdentity { pid: number; startTime: string }

/** Field 22 of /proc/PID/stat (start time in clock ticks), or undefined if gone or a zombie. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0]!, startTime: rest[19]! };
}

export function identify(pid: number): ProcessIdentity | undefined {
  const s = procStat(pid);
  return s ? { pid, startTime: s.startTime } : undefined;
}

/** True while the very process we started runs (a zombie counts as exited). */
export function isRunning(p: ProcessIdentity | undefined): boolean {
  if (!p) return false;
  const s = procStat(p.pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X' && s.startTime === p.startTime;
}

/**
 * Starts `argv` in its own session with stdout and stderr appended to `logFile`, not waited for
 * by this process. The returned `exited` promise settles when it exits while we still watch it.
 */
export function startDetached(argv: readonly string[], logFile: string): { identity: ProcessIdentity; exited: Promise<number | null> } {
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
    const exited = new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null));
      child.on('exit', (code) => resolve(code));
    });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]}`);
    const identity = identify(child.pid) ?? { pid: child.pid, startTime: '?' };
    return { identity, exited };
  } finally {
    closeSync(fd);
  }
}

async function waitExit(p: ProcessIdentity, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(p)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/**
 * Asks the process to stop (SIGTERM, which lets the NBD server flush its writable layer) and
 * waits; after `graceMs` it is killed. Returns how it ended.
 */
export async function terminate(p: ProcessIdentity | undefined, graceMs = 10_000): Promise<'not-running' | 'terminated' | 'killed'> {
  if (!isRunning(p)) return 'not-running';
  try { process.kill(p!.pid, 'SIGTERM'); } catch { return 'not-running'; }
  if (await waitExit(p!, graceMs)) return 'terminated';
  try { process.kill(p!.pid, 'SIGKILL'); } catch { /* exited meanwhile */ }
  await waitExit(p!, 5_000);
  return 'killed';
}

/** Waits up to `timeoutMs` for the process to exit on its own (e.g. nbdfuse after fusermount3 -u). */
export function waitForExit(p: ProcessIdentity | undefined, timeoutMs: number): Promise<boolean> {
  return p ? waitExit(p, timeoutMs) : Promise.resolve(true);
}
