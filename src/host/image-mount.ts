/**
 * A mount that outlives the command (`dadi mount` / `dadi umount`): an NBD server started as a
 * detached process on a private unix socket, then the host mounter's attach and mount — and the
 * reverse. The record on disk is the mounter's state plus the server: it is saved after every
 * step, and teardown (in whichever process) undoes whatever the record and the kernel say
 * exists, so a failure at any point (or a crashed server, or a crashed `dadi mount`) is cleaned
 * up by the same code.
 */
import { mkdir, readFile, realpath, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { mountAt } from './mount-table.ts';
import { attachAndMount, checkSocketPath, undoMount } from './mounter.ts';
import { isRunning, startDetached, terminate } from './processes.ts';
import { withDetail } from '../errors.ts';
import { HostStepError } from './run-tool.ts';
import { createRecord, listRecords, loadRecord, removeRecord, saveRecord, stateDir as defaultStateDir, workDirFor, type MountRecord } from './state.ts';

/** Builds the command line of a process that serves the image as NBD on unix socket `socket`. */
export type ServerCommand = (socket: string) => string[];

export interface MountImageOptions {
  mountPoint: string;
  /** What is served, for the record and `dadi mount --list` (e.g. the layer files). */
  image: string[];
  server: ServerCommand;
  readOnly: boolean;
  writableDir?: string;
  stateDir?: string;
  mountOptions?: string[];
  /** How long the server may take to listen. */
  serverTimeoutMs?: number;
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(socket);
    s.once('connect', () => { s.destroy(); res(true); });
    s.once('error', () => { s.destroy(); res(false); });
  });
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.length > 4000 ? `...${text.slice(-4000)}` : text;
}

async function waitForServer(rec: MountRecord, exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((c) => { exitCode = c; });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await canConnect(rec.server.socket)) return;
    if (exitCode !== undefined || !isRunning(rec.server.identity)) {
      // /proc may show the exit before Node delivers it; give the exit event a moment.
      exitCode ??= await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 500, undefined))]);
      const log = await logTail(rec.server.log);
      const inside = `start server: ${rec.server.argv.join(' ')} exited (code ${exitCode ?? 'unknown'}) before listening${log.trim() ? `:\n${log.trim()}` : ''}`;
      // The server's own one-line error is the cause the user needs; the rest is for --verbose.
      const cause = /^dadi: (.+)$/m.exec(log.split('\n').filter((l) => l.startsWith('dadi: ')).pop() ?? '')?.[1];
      throw withDetail(cause ? new Error(cause) : new HostStepError('start server', `the NBD server exited (code ${exitCode ?? 'unknown'}) before listening`, log), inside);
    }
    if (Date.now() >= deadline) {
      throw new HostStepError('start server', `no NBD server listening on ${rec.server.socket} after ${timeoutMs} ms`, await logTail(rec.server.log));
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function checkMountPoint(dir: string): Promise<string> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw new HostStepError('check mount point', `${abs} does not exist`);
  if (!st.isDirectory()) throw new HostStepError('check mount point', `${abs} is not a directory`);
  return realpath(abs);
}

/** Serves, attaches and mounts; on any failure undoes everything it started, then throws. */
export async function mountImage(opts: MountImageOptions): Promise<MountRecord> {
  const dir = opts.stateDir ?? defaultStateDir();
  const mountPoint = await checkMountPoint(opts.mountPoint);
  const workDir = workDirFor(dir, mountPoint);
  const socket = join(workDir, 'nbd.sock');
  checkSocketPath(socket, 'set DADI_STATE_DIR to a shorter directory');
  const rec: MountRecord = {
    version: 1, mountPoint, workDir, image: opts.image, readOnly: opts.readOnly,
    ...(opts.writableDir ? { writableDir: resolve(opts.writableDir) } : {}),
    server: { socket, log: join(workDir, 'server.log'), argv: opts.server(socket) },
    createdAt: new Date().toISOString(),
  };
  await createRecord(dir, rec);
  try {
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    const { identity, exited } = startDetached(rec.server.argv, rec.server.log);
    rec.server.identity = identity;
    await saveRecord(dir, rec);
    await waitForServer(rec, exited, opts.serverTimeoutMs ?? 30_000);
    await attachAndMount(socket, rec, {
      workDir, ...(opts.mountOptions ? { mountOptions: opts.mountOptions } : {}), progress: () => saveRecord(dir, rec),
    });
    return rec;
  } catch (err) {
    try {
      await teardown(dir, rec, true);
    } catch (undoErr) {
      throw new Error(`${(err as Error).message}; undoing the partial mount also failed: ${(undoErr as Error).message}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Undoes a (possibly partial) mount: file system, block device, nbdfuse, server, record. When
 * the file system is busy and the server still alive, stops before touching anything below it
 * unless `force`; with the server gone the file system is lazily detached.
 */
async function teardown(dir: string, rec: MountRecord, force: boolean): Promise<void> {
  const serverAlive = isRunning(rec.server.identity);
  const { errors } = await undoMount(rec, force || !serverAlive);
  const ended = await terminate(rec.server.identity);
  if (ended === 'killed') errors.push(`stop server: pid ${rec.server.identity!.pid} ignored SIGTERM and was killed; unflushed writes may be lost`);
  if (errors.length > 0 && !(errors.length === 1 && ended === 'killed')) {
    await saveRecord(dir, rec).catch(() => undefined);
    throw new Error(errors.join('; '));
  }
  await removeRecord(dir, rec);
  if (ended === 'killed') throw new Error(errors[0]);
}

function mountPointKey(dir: string): Promise<string> {
  const abs = resolve(dir);
  return realpath(abs).catch(() => abs);
}

/** `dadi umount DIR`: tears down the dadi mount recorded for DIR. */
export async function unmountImage(mountPoint: string, opts: { stateDir?: string; force?: boolean } = {}): Promise<MountRecord> {
  const dir = opts.stateDir ?? defaultStateDir();
  const key = await mountPointKey(mountPoint);
  const rec = await loadRecord(dir, key);
  if (!rec) throw new HostStepError('umount', `${key} is not a dadi mount (no record in ${join(dir, 'mounts')})`);
  await teardown(dir, rec, opts.force ?? false);
  return rec;
}

export interface MountStatus extends MountRecord { status: 'mounted' | 'stale' }

/** Every recorded mount, with whether its server and mount are still there. */
export async function listMounts(opts: { stateDir?: string } = {}): Promise<MountStatus[]> {
  const out: MountStatus[] = [];
  for (const rec of await listRecords(opts.stateDir ?? defaultStateDir())) {
    const m = await mountAt(rec.mountPoint);
    const ok = isRunning(rec.server.identity) && !!rec.mounted && m?.source === rec.device;
    out.push({ ...rec, status: ok ? 'mounted' : 'stale' });
  }
  return out;
}
