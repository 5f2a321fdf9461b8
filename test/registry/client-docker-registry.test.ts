import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem } from '../helpers/env.ts';
import { startDockerRegistry } from '../helpers/registry.ts';
import { pushImage, pushPullSuite } from './push-pull-suite.ts';
import { sampleImage } from './image-fixture.ts';

pushPullSuite('docker-registry', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return undefined;
  return startDockerRegistry(t);
});

test('docker-registry with token auth: the client gets tokens from the realm, pushes and pulls; wrong credentials give a clear 401', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry', 'openssl'] })) return;
  const user = { username: 'tok', password: 'en' };
  const reg = await startDockerRegistry(t, { tokenAuth: user });
  const client = new RegistryClient({ credentials: user });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'secure/app' };
  const image = await sampleImage(31);
  await pushImage(client, repo, image, 'v1');
  const { manifest } = await client.manifests.resolve(repo, 'v1');
  assert.equal(manifest.digest, image.digest);
  const dst = new Uint8Array(500);
  await client.blobs.readRange(repo, manifest.json.layers[1]!.digest, 1000, dst);
  assert.deepEqual(Buffer.from(dst), image.layers[1]!.subarray(1000, 1500));
  assert.ok(reg.tokensIssued() >= 2 && reg.tokensIssued() <= 4, `tokens issued: ${reg.tokensIssued()}`);

  const anonymous = new RegistryClient({ retries: 0, credentials: { username: 'tok', password: 'wrong' } });
  t.after(() => anonymous.close());
  await assert.rejects(anonymous.manifests.get(repo, 'v1'), /^RegistryError: GET http:\/\/127\.0\.0\.1:\d+\/token\?service=docker-registry-test&scope=repository%3Asecure%2Fapp%3Apull: 401 UNAUTHORIZED bad credentials/);
});
