/**
 * The converted lowers plus a new writable layer, served by `dadi serve` in its own process,
 * attached through src/host (kernel nbd or nbdfuse + loop) and mounted read-write — with mkfs
 * between attach and mount for the first layer. The server runs in another process because the
 * kernel writes back the mounted file system through it: in-process, a libuv pool blocked in
 * dirty-page throttling could starve the server that would unblock it.
 *
 * Everything started is remembered as it starts and undone in reverse order, on success and on
 * failure alike, so a failing layer leaves nothing mounted, attached or running.
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { attachExport, detachExport, type Attachment } from '../../host/attach.ts';
import { mountFs, unmountFs } from '../../host/mount-fs.ts';
import { isRunning, startDetached, terminate, type ProcessIdentity } from '../../host/processes.ts';
import { HostStepError, runStep } from '../../host/run-tool.ts';
import { mkfsArgs } from './mkfs.ts';
import { dadiCommand } from '../../cli/self.ts';

export interface StackMountOptions {
  /** Converted layer files, lowest first. */
  lowers: string[];
  /** Directory for the new writable layer (writable_data + writable_index). */
  writableDir: string;
  /** Virtual size of the writable layer; only for the first layer (later ones take the lowers'). */
  size?: number;
  /** Make the file system (first layer only). */
  mkfs: boolean;
  mountPoint: string;
  /** Private directory for the socket, logs and the nbdfuse mount (short: the socket path must fit 107 bytes). */
  workDir: string;
  /** argv prefix that runs the dadi CLI (default: this installation's, via node). */
  dadiArgv?: string[];
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

async function waitListening(socket: string, server: ProcessIdentity, log: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await canConnect(socket)) return;
    if (!isRunning(server)) throw new HostStepError('start server', `dadi serve exited before listening on ${socket}`, await logTail(log));
    if (Date.now() >= deadline) throw new HostStepError('start server', `dadi serve not listening on ${socket} after ${timeoutMs} ms`, await logTail(log));
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Serves, attaches, (mkfs,) mounts, runs `fn` on the mount point, then unmounts (flushing the file
 * system into the writable layer) and stops everything. Teardown errors after a successful `fn`
 * fail the call: an unclean unmount could lose the layer's last writes.
 */
export async function withMountedStack<T>(opts: StackMountOptions, fn: (mountPoint: string) => Promise<T>): Promise<T> {
  const socket = join(opts.workDir, 'nbd.sock');
  if (Buffer.byteLength(socket) > 107) throw new HostStepError('prepare', `socket path ${socket} is longer than 107 bytes`);
  const serverLog = join(opts.workDir, 'server.log');
  let server: ProcessIdentity | undefined;
  let attach: Attachment | undefined;
  let device: string | undefined;
  let mounted = false;
  const teardown = async (): Promise<string[]> => {
    const errors: string[] = [];
    if (mounted) {
      try { await unmountFs(opts.mountPoint, true); } catch (err) { errors.push((err as Error).message); }
      mounted = false;
    }
    if (attach) {
      try { await detachExport(attach); } catch (err) { errors.push((err as Error).message); }
      attach = undefined;
    }
    // SIGTERM makes the server drain, flush and close the writable layer.
    const ended = await terminate(server);
    if (ended === 'killed') errors.push(`dadi serve (pid ${server!.pid}) ignored SIGTERM and was killed; the writable layer may be incomplete`);
    server = undefined;
    return errors;
  };
  let result: T;
  try {
    const argv = [...(opts.dadiArgv ?? dadiCommand()), 'serve', ...opts.lowers, '--listen', `unix:${socket}`,
      '--writable', opts.writableDir, ...(opts.size !== undefined ? ['--size', String(opts.size)] : [])];
    server = startDetached(argv, serverLog).identity;
    await waitListening(socket, server, serverLog);
    device = await attachExport(socket, opts.workDir, false, async (a) => { attach = a; });
    if (opts.mkfs) await runStep('mkfs', ['mkfs.ext4', ...mkfsArgs(), device], 300_000);
    // noinit_itable: mkfs left the inode tables to be zeroed lazily; the device reads zeros
    // there already, and the kernel's background zeroing would only bloat the layer.
    await mountFs(device, opts.mountPoint, { readOnly: false, extraOptions: ['noinit_itable'] });
    mounted = true;
    result = await fn(opts.mountPoint);
  } catch (err) {
    const errors = await teardown().catch((e: Error) => [e.message]);
    if (errors.length > 0) (err as Error).message += `; cleaning up also failed: ${errors.join('; ')}`;
    throw err;
  }
  const errors = await teardown();
  if (errors.length > 0) throw new HostStepError('unmount', errors.join('; '));
  return result;
}
