/**
 * Registries for tests: the embedded one (in-process) and the real `docker-registry` (Debian's
 * distribution 2.x, started with a generated config on a free loopback port). Both are stopped
 * by t.after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startRegistryServer, type RegistryServer, type RegistryServerOptions } from '../../src/registry/server/server.ts';
import { tempDir } from './env.ts';

export interface TestRegistry {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, the registry part of an image reference. */
  hostPort: string;
  root: string;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (for programs that cannot be told to pick one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The embedded registry on 127.0.0.1 with a fresh root. */
export async function startEmbeddedRegistry(t: TestContext, opts: Partial<RegistryServerOptions> = {}):
Promise<TestRegistry & { server: RegistryServer }> {
  const root = opts.root ?? await tempDir(t, 'dadi-registry-');
  const server = await startRegistryServer({ ...opts, root, host: '127.0.0.1', port: 0 });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.stop();
  };
  t.after(stop);
  return { server, url: server.url, hostPort: server.hostPort, root, stop };
}

/** The `docker-registry` daemon, filesystem storage in a temp dir, deletes enabled. */
export async function startDockerRegistry(t: TestContext): Promise<TestRegistry> {
  const root = await tempDir(t, 'dadi-docker-registry-');
  const port = await freePort();
  const config = join(root, 'config.yml');
  await writeFile(config, [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(root, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '',
  ].join('\n'));
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const url = `http://127.0.0.1:${port}`;
  const stop = (): Promise<void> => stopChild(child);
  t.after(stop);
  await waitForHttp(`${url}/v2/`, child, () => stderr);
  return { url, hostPort: `127.0.0.1:${port}`, root, stop };
}

async function waitForHttp(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s: ${stderr()}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
