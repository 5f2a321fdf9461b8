/**
 * Interop with real tools: skopeo pushes an OCI layout into the embedded registry (also with
 * basic and token auth), our client and `skopeo inspect` read it back, and skopeo copies between
 * the embedded registry and docker-registry in both directions.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { startDockerRegistry, startEmbeddedRegistry } from '../helpers/registry.ts';
import { sampleImage, writeOciLayout, type TestImage } from './image-fixture.ts';

const run = promisify(execFile);

async function skopeo(t: TestContext, args: string[]): Promise<string> {
  const tmp = await tempDir(t, 'dadi-skopeo-');
  const { stdout } = await run('skopeo', ['--insecure-policy', ...args], {
    env: { ...process.env, TMPDIR: tmp, REGISTRY_AUTH_FILE: join(tmp, 'auth.json') }, timeout: 30_000, maxBuffer: 16 << 20,
  });
  return stdout;
}

async function layoutOf(t: TestContext, image: TestImage): Promise<string> {
  const dir = join(await tempDir(t, 'dadi-oci-'), 'layout');
  await writeOciLayout(dir, image, 'v1');
  return dir;
}

/** Our client reads the image and finds exactly the layers and config we built. */
async function assertImage(client: RegistryClient, repo: { registry: string; repository: string }, tag: string, image: TestImage): Promise<string> {
  const { manifest } = await client.manifests.resolve(repo, tag);
  assert.deepEqual(await client.blobs.get(repo, manifest.json.config.digest), image.config);
  assert.equal(manifest.json.layers.length, image.layers.length);
  for (const [i, d] of manifest.json.layers.entries()) {
    assert.deepEqual(await client.blobs.get(repo, d.digest, d.size), image.layers[i]);
  }
  return manifest.digest;
}

test('skopeo copies an OCI layout into the embedded registry; our client and skopeo inspect read it back', async (t) => {
  if (!requireSystem(t, { commands: ['skopeo'] })) return;
  const reg = await startEmbeddedRegistry(t);
  const image = await sampleImage(11, { gzip: true });
  const layout = await layoutOf(t, image);
  await skopeo(t, ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reg.hostPort}/skopeo/img:v1`]);

  const client = new RegistryClient();
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'skopeo/img' };
  const digest = await assertImage(client, repo, 'v1', image);
  assert.equal(digest, image.digest, 'skopeo kept the manifest bytes');

  const inspect = JSON.parse(await skopeo(t, ['inspect', '--tls-verify=false', `docker://${reg.hostPort}/skopeo/img:v1`])) as
    { Digest: string; Layers: string[]; Labels: Record<string, string> };
  assert.equal(inspect.Digest, image.digest);
  assert.deepEqual(inspect.Layers, image.manifestJson.layers.map((l) => l.digest));
  assert.equal(inspect.Labels.test, 'seed-11');
  const rawManifest = await skopeo(t, ['inspect', '--raw', '--tls-verify=false', `docker://${reg.hostPort}/skopeo/img:v1`]);
  assert.equal(rawManifest, image.manifest.toString());
  assert.deepEqual(await client.listTags(repo), ['v1']);
});

test('skopeo copies embedded -> docker-registry -> embedded; digests survive both ways', async (t) => {
  if (!requireSystem(t, { commands: ['skopeo', 'docker-registry'] })) return;
  const ours = await startEmbeddedRegistry(t);
  const theirs = await startDockerRegistry(t);
  const image = await sampleImage(12, { gzip: true });
  const client = new RegistryClient();
  t.after(() => client.close());
  const { pushImage } = await import('./push-pull-suite.ts');
  await pushImage(client, { registry: ours.hostPort, repository: 'src/app' }, image, 'v1', 32 * 1024);

  await skopeo(t, ['copy', '--src-tls-verify=false', '--dest-tls-verify=false',
    `docker://${ours.hostPort}/src/app:v1`, `docker://${theirs.hostPort}/mid/app:v1`]);
  assert.equal(await assertImage(client, { registry: theirs.hostPort, repository: 'mid/app' }, 'v1', image), image.digest);

  await skopeo(t, ['copy', '--src-tls-verify=false', '--dest-tls-verify=false',
    `docker://${theirs.hostPort}/mid/app:v1`, `docker://${ours.hostPort}/back/app:v2`]);
  assert.equal(await assertImage(client, { registry: ours.hostPort, repository: 'back/app' }, 'v2', image), image.digest);
});

test('skopeo pushes and pulls through the embedded registry with basic and with token auth', async (t) => {
  if (!requireSystem(t, { commands: ['skopeo'] })) return;
  const image = await sampleImage(13, { gzip: true });
  const layout = await layoutOf(t, image);
  for (const kind of ['basic', 'token'] as const) {
    const reg = await startEmbeddedRegistry(t, { auth: { kind, username: 'bob', password: 'pw' } });
    const dest = `docker://${reg.hostPort}/auth/${kind}:v1`;
    await assert.rejects(skopeo(t, ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, dest]), /unauthorized|authentication required|401/i);
    await skopeo(t, ['copy', '--dest-tls-verify=false', '--dest-creds', 'bob:pw', `oci:${layout}:v1`, dest]);
    const inspect = JSON.parse(await skopeo(t, ['inspect', '--tls-verify=false', '--creds', 'bob:pw', dest])) as { Digest: string };
    assert.equal(inspect.Digest, image.digest, kind);
    const client = new RegistryClient({ credentials: { username: 'bob', password: 'pw' } });
    t.after(() => client.close());
    assert.equal(await assertImage(client, { registry: reg.hostPort, repository: `auth/${kind}` }, 'v1', image), image.digest);
  }
});
