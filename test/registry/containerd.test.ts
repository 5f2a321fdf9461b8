/**
 * Interop with containerd: a private containerd (its own root, state and socket in a temp dir)
 * pulls an image from the embedded registry, unpacks it, and pushes it back under another name;
 * the bytes containerd stored and pushed are the ones we served.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { sampleImage } from './image-fixture.ts';
import { pushImage } from './push-pull-suite.ts';

const run = promisify(execFile);

interface Ctr {
  (args: string[]): Promise<string>;
  bytes(args: string[]): Promise<Buffer>;
}

/** Starts containerd with everything under a temp dir; returns a `ctr` runner bound to it. */
async function startContainerd(t: TestContext): Promise<Ctr> {
  const dir = await tempDir(t, 'dadi-ctrd-');
  const socket = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  await writeFile(config, [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${join(dir, 't.sock')}"`,
    '',
  ].join('\n'));
  const daemon = spawn('containerd', ['--config', config, '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  t.after(async () => {
    if (daemon.exitCode !== null) return;
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await Promise.race([exited, sleep(5000).then(() => daemon.kill('SIGKILL'))]);
  });
  const argv = (args: string[]): string[] => ['--address', socket, '--namespace', 'dadi-test', ...args];
  const ctr: Ctr = Object.assign(
    async (args: string[]) => (await run('ctr', argv(args), { timeout: 60_000 })).stdout,
    { bytes: async (args: string[]) => (await run('ctr', argv(args), { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 60_000 })).stdout },
  );
  for (let i = 0; ; i++) {
    try {
      await access(socket);
      await ctr(['version']);
      return ctr;
    } catch (err) {
      if (daemon.exitCode !== null || i > 100) throw new Error(`containerd did not start: ${stderr || (err as Error).message}`);
      await sleep(100);
    }
  }
}

test('containerd pulls and unpacks an image from the embedded registry and pushes it back unchanged', async (t) => {
  if (!requireSystem(t, { commands: ['containerd', 'ctr'], root: true })) return;
  const reg = await startEmbeddedRegistry(t);
  const image = await sampleImage(21, { gzip: true });
  const client = new RegistryClient();
  t.after(() => client.close());
  await pushImage(client, { registry: reg.hostPort, repository: 'ctr/app' }, image, 'v1', 64 * 1024);
  const ctr = await startContainerd(t);

  const ref = `${reg.hostPort}/ctr/app:v1`;
  await ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', '--platform', 'linux/amd64', ref]);
  const listed = await ctr(['images', 'ls']);
  assert.match(listed, new RegExp(`${ref.replace(/[.]/g, '\\.')}\\s+application/vnd\\.oci\\.image\\.manifest\\.v1\\+json\\s+${image.digest}`));
  // Unpacked into the snapshotter: one committed snapshot per layer.
  const snapshots = (await ctr(['snapshots', '--snapshotter', 'native', 'ls'])).trim().split('\n').slice(1);
  assert.equal(snapshots.length, image.layers.length);
  // Every blob containerd stored is byte-identical to what we pushed.
  for (const [i, d] of image.manifestJson.layers.entries()) {
    const stored = await ctr.bytes(['content', 'get', d.digest]);
    assert.ok(stored.equals(Buffer.from(image.layers[i]!)), `layer ${i} bytes`);
  }

  await ctr(['images', 'tag', ref, `${reg.hostPort}/ctr/copy:v2`]);
  await ctr(['images', 'push', '--plain-http', `${reg.hostPort}/ctr/copy:v2`]);
  const { manifest } = await client.manifests.resolve({ registry: reg.hostPort, repository: 'ctr/copy' }, 'v2');
  assert.equal(manifest.digest, image.digest, 'containerd pushed the same manifest');
});
