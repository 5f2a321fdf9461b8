/**
 * A private containerd for tests (its own root, state and sockets in a temp dir; CRI off), with
 * proxy snapshotters registered by name, and a `ctr` bound to it and to one namespace. Stopped by
 * t.after after its containers and tasks are gone.
 */
import { execFile, spawn } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Containerd {
  socket: string;
  namespace: string;
  ctr(args: string[], opts?: { timeoutMs?: number; bin?: string }): Promise<string>;
}

export async function startContainerd(t: TestContext, opts: { proxyPlugins?: Record<string, string>; namespace?: string } = {}): Promise<Containerd> {
  const dir = await mkdtemp('/tmp/dctd-');
  const socket = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  const plugins = Object.entries(opts.proxyPlugins ?? {}).flatMap(([name, address]) => [
    `[proxy_plugins.${name}]`, '  type = "snapshot"', `  address = "${address}"`]);
  await writeFile(config, [
    'version = 2', `root = "${join(dir, 'root')}"`, `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]', `  address = "${socket}"`, '[ttrpc]', `  address = "${join(dir, 't.sock')}"`,
    ...plugins, '',
  ].join('\n'));
  const daemon = spawn('containerd', ['--config', config, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20000); });
  const namespace = opts.namespace ?? 'dadi-test';
  const ctr = async (args: string[], o: { timeoutMs?: number; bin?: string } = {}): Promise<string> => {
    try {
      return (await run(o.bin ?? 'ctr', ['--address', socket, '--namespace', namespace, ...args], { timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 << 20 })).stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`${o.bin ?? 'ctr'} ${args.join(' ')}: ${e.stderr || e.message}`);
    }
  };
  t.after(async () => {
    for (const id of (await ctr(['containers', 'ls', '-q']).catch(() => '')).split('\n').filter(Boolean)) {
      await ctr(['tasks', 'kill', '-s', 'KILL', id]).catch(() => {});
      await ctr(['tasks', 'rm', '-f', id]).catch(() => {});
      await ctr(['containers', 'rm', id]).catch(() => {});
    }
    if (daemon.exitCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000).then(() => daemon.kill('SIGKILL'))]);
    }
    const mounts = (await run('sh', ['-c', `grep " ${dir}" /proc/self/mountinfo | awk '{print $5}' | sort -r`])).stdout.split('\n').filter(Boolean);
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  for (let i = 0; ; i++) {
    try {
      await access(socket);
      await ctr(['version']);
      return { socket, namespace, ctr };
    } catch (err) {
      if (daemon.exitCode !== null || i > 150) throw new Error(`containerd did not start: ${stderr || (err as Error).message}`);
      await sleep(100);
    }
  }
}
