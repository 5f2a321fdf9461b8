/**
 * `dadi serve REF` against real registries: the vector layers pushed as an overlaybd image into
 * the `docker-registry` package (by our client) and into the embedded registry (by `skopeo copy`
 * from an OCI layout), attached lazily, copied out with `nbdcopy` and compared byte for byte with
 * `dadi cat` of the local layer files. The embedded-registry run sits behind a counting proxy to
 * prove the cache survives a restart of the server.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dadiArgv, requireSystem, runDadi, tempDir, vector } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { startDockerRegistry, startEmbeddedRegistry } from '../../helpers/registry.ts';
import { startServe, type ServeInfo } from '../../nbd/serve-process.ts';
import { assertExportEquals } from './compare.ts';
import { buildObdImage, pushObdImage, writeObdLayout } from './fixture.ts';

const run = promisify(execFile);

type RemoteServeInfo = ServeInfo & { image: string; manifestDigest: string; attach: { bytes: number; requests: number; metadataBytes: number } };

function layerGets(proxy: FaultProxy, blobs: readonly string[]): number {
  return proxy.log.filter((e) => e.method === 'GET' && blobs.some((b) => e.url.endsWith(`/blobs/${b}`))).length;
}

test('docker-registry: dadi serve REF attaches lazily and nbdcopy of the export equals dadi cat of the layers', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry', 'nbdcopy', 'cmp'] })) return;
  const reg = await startDockerRegistry(t);
  const layers = [vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')];
  const img = await buildObdImage(layers);
  await pushObdImage(reg.hostPort, 'vec/ext4', 'v1', img);
  const dir = await tempDir(t);
  const ref = `${reg.hostPort}/vec/ext4:v1`;

  const srv = await startServe(t, [ref, '--listen', `unix:${join(dir, 's.sock')}`, '--cache-dir', join(dir, 'cache'), '--no-background']);
  const info = srv.info as RemoteServeInfo;
  assert.equal(info.image, ref);
  assert.equal(info.manifestDigest, img.digest);
  assert.equal(info.size, 1 << 30);
  assert.equal(info.writable, false);
  const imageBytes = img.layers.reduce((s, l) => s + l.size, 0);
  assert.ok(info.attach.bytes - info.attach.metadataBytes < imageBytes / 2,
    `attach fetched ${info.attach.bytes} bytes of a ${imageBytes}-byte image`);
  await assertExportEquals(t, srv.info.uri, layers);
  assert.equal(await srv.stop(), 0, srv.stderr());
});

test('embedded registry fed by skopeo: export equals dadi cat; after a restart cached ranges fetch nothing', async (t) => {
  if (!requireSystem(t, { commands: ['skopeo', 'nbdcopy', 'cmp'] })) return;
  const reg = await startEmbeddedRegistry(t);
  const layers = [vector('A.lz4.bs4.tar.zlsmt'), vector('B.zstd.bs4.zlsmt')];
  const img = await buildObdImage(layers);
  const dir = await tempDir(t);
  const layout = join(dir, 'layout');
  await writeObdLayout(layout, 'v1', img);
  await run('skopeo', ['--insecure-policy', 'copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reg.hostPort}/vec/ab:v1`], {
    env: { ...process.env, TMPDIR: dir, REGISTRY_AUTH_FILE: join(dir, 'auth.json') }, timeout: 30_000,
  });
  const proxy = await startFaultProxy(t, reg.url);
  const ref = `${proxy.hostPort}/vec/ab:v1`;
  const cache = join(dir, 'cache');
  const blobs = img.layers.map((l) => l.digest);
  const serveArgs = (sock: string): string[] => [ref, '--listen', `unix:${join(dir, sock)}`, '--cache-dir', cache, '--no-background'];

  const first = await startServe(t, serveArgs('1.sock'));
  assert.equal((first.info as RemoteServeInfo).manifestDigest, img.digest, 'skopeo kept the manifest, so the digest matches');
  await assertExportEquals(t, first.info.uri, layers);
  assert.ok(layerGets(proxy, blobs) > 0, 'the first copy read layer data from the registry');
  assert.equal(await first.stop(), 0, first.stderr());

  // A new server on the same cache: attach and the whole copy are served from the cache.
  proxy.log.length = 0;
  const second = await startServe(t, serveArgs('2.sock'));
  assert.equal((second.info as RemoteServeInfo).attach.bytes, (second.info as RemoteServeInfo).attach.metadataBytes);
  await assertExportEquals(t, second.info.uri, layers);
  assert.equal(layerGets(proxy, blobs), 0, `no layer blob fetched after the restart: ${JSON.stringify(proxy.log.map((e) => e.url))}`);
  assert.equal(await second.stop(), 0, second.stderr());

});

test('serve refuses a reference mixed with layer files, and --size for a registry image', async (t) => {
  const dir = await tempDir(t);
  const mixed = await runDadi(['serve', '127.0.0.1:9/vec/ab:v1', vector('A.lsmt'), '--listen', `unix:${join(dir, 's')}`]);
  assert.equal(mixed.code, 1);
  assert.match(mixed.stderr, /127\.0\.0\.1:9\/vec\/ab:v1 is an image reference .* served alone/);
  const sized = await runDadi(['serve', '127.0.0.1:9/vec/ab:v1', '--size', '1G', '--listen', `unix:${join(dir, 's')}`]);
  assert.equal(sized.code, 1);
  assert.match(sized.stderr, /--size does not apply to a registry image/);
});

test('the server log reports attach and, at shutdown, the fetch and cache counters per layer', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage([vector('A.lz4.bs4.tar.zlsmt'), vector('B.zstd.bs4.zlsmt')]);
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', img);
  const dir = await tempDir(t);
  const [cmd, argv] = dadiArgv(['serve', `${reg.hostPort}/vec/ab:v1`, '--listen', `unix:${join(dir, 's.sock')}`,
    '--cache-dir', join(dir, 'cache'), '--no-background', '--json']);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DADI_LOG_LEVEL: 'info' } });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    void exited.then(() => reject(new Error(`dadi serve exited before listening: ${stderr}`)));
  });
  const uri = (JSON.parse(line) as ServeInfo).uri;
  // Layer A's write at 3 MiB (payload.bin[393216:655360]) lies in data only the read can fetch.
  await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read 3M 4K', uri]);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  const entries = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const listening = entries.find((e) => e.msg === 'nbd server listening') as { attach?: { bytes: number } } | undefined;
  assert.ok(listening?.attach && listening.attach.bytes > 0, 'the listening line carries the attach figures');
  const counters = entries.find((e) => e.msg === 'remote image: registry fetches and cache counters') as
    { fetched: { bytes: number }; layers: Array<{ blobDigest: string; fetched: { bytes: number }; cache: { misses: number; hits: number } }> } | undefined;
  assert.ok(counters, `no counters line in:\n${stderr}`);
  assert.deepEqual(counters.layers.map((l) => l.blobDigest), img.layers.map((l) => l.digest));
  assert.ok(counters.fetched.bytes >= counters.layers.reduce((s, l) => s + l.fetched.bytes, 0));
  assert.ok(counters.layers.every((l) => l.cache.hits + l.cache.misses > 0), 'cache counters per layer');
});
