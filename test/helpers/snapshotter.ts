/**
 * The dadi snapshotter daemon for tests: started from source as a child process on a private
 * root, socket and cache (short paths: the NBD sockets live under the root), killed with any
 * signal a test wants, restarted on the same root, and always stopped and cleaned up by t.after
 * (devices it left are torn down by a final short-lived daemon run on the same root).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GrpcConnection, SnapshotsClient } from '../../src/daemon/containerd/client.ts';
import { dadiArgv } from './env.ts';

export interface SnapshotterDaemon {
  root: string;
  address: string;
  cacheDir: string;
  logFile: string;
  client: SnapshotsClient;
  /** Starts the daemon (again) on the same root; `env` adds variables for this run only (fault points). */
  start(env?: NodeJS.ProcessEnv): Promise<void>;
  /** Sends `signal` and waits for the exit; resolves with the exit signal or code. */
  kill(signal?: NodeJS.Signals): Promise<string>;
  /** Resolves when the current process exits by itself (a fault point). */
  exited(): Promise<string>;
  pid(): number | undefined;
  log(): Promise<string>;
}

export interface SnapshotterDaemonOptions {
  /** Extra config TOML (rwMode, registry). */
  toml?: string;
  /** Share a cache directory between daemons. */
  cacheDir?: string;
  /** More command-line flags (e.g. --metrics-address). */
  args?: string[];
}

/** A short base directory: NBD socket paths under the root must stay under 108 bytes. */
async function shortTemp(prefix: string): Promise<string> {
  return mkdtemp(join('/tmp', prefix));
}

export async function startSnapshotterDaemon(t: TestContext, opts: SnapshotterDaemonOptions = {}): Promise<SnapshotterDaemon> {
  const base = await shortTemp('dsn-');
  const root = join(base, 'r');
  const address = join(base, 's.sock');
  const cacheDir = opts.cacheDir ?? join(base, 'cache');
  const logFile = join(base, 'daemon.log');
  const config = join(base, 'config.toml');
  await writeFile(config, `logLevel = "debug"\n[background]\nenable = false\n${opts.toml ?? ''}\n`);
  let child: ChildProcess | undefined;
  let exit: Promise<string> = Promise.resolve('not started');
  const conn = new GrpcConnection(address, { timeoutMs: 120_000 });
  const client = new SnapshotsClient(conn);

  const start = async (env: NodeJS.ProcessEnv = {}): Promise<void> => {
    const [cmd, args] = dadiArgv(['snapshotter', '--config', config, '--root', root, '--address', address, '--cache-dir', cacheDir, ...(opts.args ?? [])]);
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(logFile, 'a');
    const c = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    closeSync(fd);
    child = c;
    exit = new Promise((resolve) => c.once('exit', (code, signal) => resolve(signal ?? String(code))));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`dadi snapshotter exited early: ${(await readFile(logFile, 'utf8')).slice(-3000)}`);
      if (await access(address).then(() => true, () => false)) {
        try {
          await client.list();
          return;
        } catch { /* not serving yet */ }
      }
      if (Date.now() > deadline) throw new Error(`dadi snapshotter did not serve on ${address}: ${(await readFile(logFile, 'utf8')).slice(-3000)}`);
      await sleep(50);
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<string> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return exit;
    c.kill(signal);
    const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    const how = await exit;
    clearTimeout(timer);
    return how;
  };

  t.after(async () => {
    conn.close();
    await kill('SIGTERM');
    // A run on the same root tears down whatever a killed daemon left, then stops cleanly.
    if (await access(root).then(() => true, () => false)) {
      await start().catch(() => {});
      await kill('SIGTERM');
    }
    await rm(base, { recursive: true, force: true });
  });

  await start();
  return {
    root, address, cacheDir, logFile, client, start, kill,
    exited: () => exit,
    pid: () => child?.pid,
    log: () => readFile(logFile, 'utf8'),
  };
}

/** Everything under `root` the kernel or the process table still holds: mounts, loop devices, nbdfuse processes. */
export async function leftovers(root: string): Promise<string[]> {
  const found: string[] = [];
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && mp.startsWith(`${root}/`)) found.push(`mount ${mp}`);
  }
  for (const name of await readdir('/sys/block').catch(() => [] as string[])) {
    if (!name.startsWith('loop')) continue;
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.startsWith(`${root}/`)) found.push(`loop ${name} on ${backing.trim()}`);
  }
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.endsWith('nbdfuse') && argv.some((a) => a.startsWith(`${root}/`))) found.push(`nbdfuse pid ${pid}`);
  }
  return found;
}
