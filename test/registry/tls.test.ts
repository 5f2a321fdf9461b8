/**
 * HTTPS: the embedded registry with a throwaway certificate; our client trusts it through an
 * extra CA (and refuses it without one, naming the URL); skopeo verifies it with --cert-dir.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RegistryClient } from '../../src/registry/client.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { sampleImage, writeOciLayout } from './image-fixture.ts';
import { pushImage } from './push-pull-suite.ts';

const run = promisify(execFile);

async function certificate(t: TestContext): Promise<{ dir: string; cert: Buffer; key: Buffer }> {
  const dir = await tempDir(t, 'dadi-tls-');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  return { dir, cert: await readFile(join(dir, 'cert.pem')), key: await readFile(join(dir, 'key.pem')) };
}

test('HTTPS registry: trusted through an extra CA, refused without it, token realm over https', async (t) => {
  if (!requireSystem(t, { commands: ['openssl'] })) return;
  const tls = await certificate(t);
  const reg = await startEmbeddedRegistry(t, { tls: { cert: tls.cert, key: tls.key }, auth: { kind: 'token', username: 'u', password: 'p' } });
  assert.match(reg.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const endpoints = { [reg.hostPort]: reg.url };
  const client = new RegistryClient({ endpoints, ca: tls.cert, credentials: { username: 'u', password: 'p' } });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'tls/app' };
  const image = await sampleImage(41);
  await pushImage(client, repo, image, 'v1');
  assert.equal((await client.manifests.resolve(repo, 'v1')).manifest.digest, image.digest);

  const untrusting = new RegistryClient({ endpoints, credentials: { username: 'u', password: 'p' } });
  t.after(() => untrusting.close());
  await assert.rejects(untrusting.manifests.get(repo, 'v1'), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.match(err.message, new RegExp(`^GET ${reg.url}/v2/tls/app/manifests/v1: .*(self[- ]signed|certificate)`, 'i'));
    assert.doesNotMatch(err.message, /gave up after/, 'a certificate error is not retried');
    return true;
  });
});

test('skopeo pushes to and inspects the HTTPS embedded registry, verifying its certificate', async (t) => {
  if (!requireSystem(t, { commands: ['openssl', 'skopeo'] })) return;
  const tls = await certificate(t);
  const reg = await startEmbeddedRegistry(t, { tls: { cert: tls.cert, key: tls.key } });
  const certDir = await tempDir(t, 'dadi-certdir-');
  await copyFile(join(tls.dir, 'cert.pem'), join(certDir, 'ca.crt'));
  const image = await sampleImage(42, { gzip: true });
  const layout = join(await tempDir(t), 'layout');
  await writeOciLayout(layout, image, 'v1');
  const tmp = await tempDir(t);
  const env = { ...process.env, TMPDIR: tmp, REGISTRY_AUTH_FILE: join(tmp, 'auth.json') };
  const ref = `docker://${reg.hostPort}/tls/skopeo:v1`;
  await run('skopeo', ['--insecure-policy', 'copy', '--dest-cert-dir', certDir, `oci:${layout}:v1`, ref], { env, timeout: 30_000 });
  const { stdout } = await run('skopeo', ['--insecure-policy', 'inspect', '--cert-dir', certDir, ref], { env, timeout: 30_000 });
  assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, image.digest);
  await assert.rejects(run('skopeo', ['--insecure-policy', 'inspect', ref], { env, timeout: 30_000 }), /certificate/i);
});
