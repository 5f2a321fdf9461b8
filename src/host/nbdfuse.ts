/**
 * The NBD export as a file, through nbdfuse (no kernel nbd module needed): `nbdfuse DIR --unix
 * SOCKET` exposes it as DIR/nbd and writes its pid file once it serves, which is our readiness
 * signal. Stopping it is `fusermount3 -u DIR`, after which nbdfuse exits by itself.
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mountAt } from './mount-table.ts';
import { isRunning, startDetached, terminate, waitForExit, type ProcessIdentity } from './processes.ts';
import { HostStepError, runTool } from './run-tool.ts';

export interface FuseExport { dir: string; file: string; nbdfuse: ProcessIdentity }

/**
 * Starts nbdfuse on `dir` (created if needed) for the export on `socket` and waits until DIR/nbd
 * exists with a non-zero size. `onStarted` learns the process before readiness so that a
 * failure later can still be cleaned up by someone else.
 */
export async function startNbdfuse(
  socket: string, dir: string,
  opts: { readOnly: boolean; logFile: string; onStarted?: (p: ProcessIdentity) => Promise<void>; timeoutMs?: number; serverReady?: Promise<unknown> },
): Promise<FuseExport> {
  await mkdir(dir, { recursive: true });
  const pidFile = join(dir, '..', 'nbdfuse.pid');
  await rm(pidFile, { force: true });
  const argv = ['nbdfuse', '-P', pidFile, ...(opts.readOnly ? ['-r'] : []), dir, '--unix', socket];
  const { identity, exited } = startDetached(argv, opts.logFile);
  await opts.onStarted?.(identity);
  let exitCode: number | null | undefined;
  void exited.then((c) => { exitCode = c; });
  const timeoutMs = opts.timeoutMs ?? 15_000;
  // A server whose disk is still opening holds nbdfuse in the handshake: the timeout starts once it can answer.
  let deadline = opts.serverReady ? Infinity : Date.now() + timeoutMs;
  void opts.serverReady?.then(() => { deadline = Date.now() + timeoutMs; }, () => { deadline = Date.now() + timeoutMs; });
  const file = join(dir, 'nbd');
  for (;;) {
    const ready = await readFile(pidFile, 'utf8').then((t) => t.trim() !== '', () => false);
    if (ready) {
      const size = await stat(file).then((s) => s.size, () => 0);
      if (size > 0) return { dir, file, nbdfuse: identity };
    }
    if (exitCode !== undefined || !isRunning(identity)) {
      exitCode ??= await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 500, undefined))]);
      const log = await readFile(opts.logFile, 'utf8').catch(() => '');
      throw new HostStepError('start nbdfuse', `${argv.join(' ')} exited (code ${exitCode ?? 'unknown'}) before serving`, log);
    }
    if (Date.now() >= deadline) {
      const log = await readFile(opts.logFile, 'utf8').catch(() => '');
      throw new HostStepError('start nbdfuse', `${file} did not appear within ${timeoutMs} ms`, log);
    }
    // nbdfuse is up within tens of ms of the handshake; a short poll keeps the wait from adding to it.
    await new Promise((r) => setTimeout(r, 4));
  }
}

/**
 * Unmounts the nbdfuse directory (retrying while the loop device lets go of it, then lazily)
 * and makes sure the nbdfuse process is gone. `lazy` skips the wait for a device still in use.
 */
export async function stopNbdfuse(dir: string, nbdfuse: ProcessIdentity | undefined, lazy = false): Promise<void> {
  if (await mountAt(dir)) {
    let last = '';
    const deadline = Date.now() + (lazy ? 0 : 5_000);
    for (;;) {
      const r = await runTool(['fusermount3', '-u', dir], 10_000);
      if (r.code === 0 || !(await mountAt(dir))) break;
      last = r.stderr;
      if (Date.now() >= deadline) {
        const detached = await runTool(['fusermount3', '-u', '-z', dir], 10_000);
        if (detached.code !== 0 && (await mountAt(dir))) throw new HostStepError('stop nbdfuse', `fusermount3 -u ${dir} failed`, last + detached.stderr);
        break;
      }
      await new Promise((r2) => setTimeout(r2, 50));
    }
  }
  if (!(await waitForExit(nbdfuse, lazy ? 500 : 5_000))) await terminate(nbdfuse, 2_000);
}
