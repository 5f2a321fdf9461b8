/**
 * The client's auth flows against the embedded registry in basic and token modes: credentials
 * explicit or from a DOCKER_CONFIG dir, token reuse, renewal after a 401 and on expiry, and
 * clear 401 errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RegistryClient } from '../../src/registry/client.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import type { RequestLogEntry } from '../../src/registry/server/server.ts';
import { tempDir } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { sampleImage } from './image-fixture.ts';
import { pushImage } from './push-pull-suite.ts';

const creds = { username: 'alice', password: 's3cret' };

test('basic auth: explicit credentials work; none or wrong ones give a 401 naming the URL', async (t) => {
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'basic', ...creds } });
  const repo = { registry: reg.hostPort, repository: 'b/app' };
  const good = new RegistryClient({ credentials: creds, retries: 1 });
  t.after(() => good.close());
  const image = await sampleImage(4);
  await pushImage(good, repo, image, 'v1');
  assert.equal((await good.manifests.get(repo, 'v1')).digest, image.digest);

  const none = new RegistryClient({ retries: 1, dockerConfig: join(await tempDir(t), 'missing.json') });
  t.after(() => none.close());
  await assert.rejects(none.manifests.get(repo, 'v1'), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.status, 401);
    assert.equal(err.message, `GET ${reg.url}/v2/b/app/manifests/v1: 401 UNAUTHORIZED authentication required (no credentials configured for ${reg.hostPort})`);
    return true;
  });
  const wrong = new RegistryClient({ credentials: { username: 'alice', password: 'nope' }, retries: 1 });
  t.after(() => wrong.close());
  await assert.rejects(wrong.blobs.head(repo, image.manifestJson.layers[0]!.digest),
    new RegExp(`^RegistryError: HEAD ${reg.url}/v2/b/app/blobs/sha256:[0-9a-f]{64}: 401 .*credentials rejected`));
});

test('token auth: one token per scope, reused; pushes, pulls and cross-repo mounts work', async (t) => {
  const log: RequestLogEntry[] = [];
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'token', ...creds }, onRequest: (e) => log.push(e) });
  const client = new RegistryClient({ credentials: creds });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'tok/app' };
  const image = await sampleImage(5);
  await pushImage(client, repo, image, 'v1');
  const pulled = await client.manifests.resolve(repo, 'v1');
  for (const l of pulled.manifest.json.layers) await client.blobs.get(repo, l.digest);
  // push scope once, pull scope once: the tokens are cached, not fetched per request.
  assert.equal(reg.server.auth!.issued, 2);
  assert.equal(client.auth.tokenFetches, 2);
  assert.ok(log.filter((e) => e.url.startsWith('/v2/tok/')).every((e) => e.status !== 401 || !e.authorization),
    'no request with a token was refused');

  const other = { registry: reg.hostPort, repository: 'tok/other' };
  assert.equal(await client.blobs.mount(other, 'tok/app', image.manifestJson.layers[0]!.digest), true);
  const tokenRequest = log.filter((e) => e.url.startsWith('/token')).pop()!;
  assert.match(decodeURIComponent(tokenRequest.url), /scope=repository:tok\/other:pull,push&scope=repository:tok\/app:pull/);
});

test('token auth: a token the registry rejects (expired early) is renewed on the 401', async (t) => {
  const log: RequestLogEntry[] = [];
  const reg = await startEmbeddedRegistry(t, {
    auth: { kind: 'token', ...creds, tokenLifetimeSeconds: 0.4, advertisedLifetimeSeconds: 3600 },
    onRequest: (e) => log.push(e),
  });
  const client = new RegistryClient({ credentials: creds });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'exp' };
  const { digest } = await client.blobs.upload(repo, Buffer.from('payload'));
  assert.equal(await client.blobs.head(repo, digest), 7);
  const issued = reg.server.auth!.issued;
  await new Promise((r) => setTimeout(r, 600));
  log.length = 0;
  assert.equal(await client.blobs.head(repo, digest), 7);
  assert.equal(reg.server.auth!.issued, issued + 1);
  assert.deepEqual(log.map((e) => `${e.method} ${e.url.split('?')[0]} ${e.status}`),
    [`HEAD /v2/exp/blobs/${digest} 401`, 'GET /token 200', `HEAD /v2/exp/blobs/${digest} 200`]);
});

test('token auth: expires_in is honoured, the client renews before sending a stale token', async (t) => {
  const log: RequestLogEntry[] = [];
  const reg = await startEmbeddedRegistry(t, {
    auth: { kind: 'token', ...creds, tokenLifetimeSeconds: 1 }, onRequest: (e) => log.push(e),
  });
  const client = new RegistryClient({ credentials: creds });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'exp2' };
  const { digest } = await client.blobs.upload(repo, Buffer.from('payload'));
  await client.blobs.head(repo, digest);
  await new Promise((r) => setTimeout(r, 1100));
  log.length = 0;
  await client.blobs.head(repo, digest);
  assert.deepEqual(log.map((e) => `${e.method} ${e.url.split('?')[0]} ${e.status}`),
    ['GET /token 200', `HEAD /v2/exp2/blobs/${digest} 200`]);
});

test('token auth: wrong credentials fail with the token URL and 401', async (t) => {
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'token', ...creds } });
  const client = new RegistryClient({ credentials: { username: 'alice', password: 'bad' }, retries: 1 });
  t.after(() => client.close());
  await assert.rejects(client.listTags({ registry: reg.hostPort, repository: 'x' }), (err: unknown) => {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.status, 401);
    assert.match(err.message, new RegExp(`^GET ${reg.url}/token\\?service=dadi-registry&scope=repository%3Ax%3Apull: 401 UNAUTHORIZED invalid username or password`));
    return true;
  });
});

test('credentials come from $DOCKER_CONFIG/config.json, matched by host or host/path prefix', async (t) => {
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'token', ...creds } });
  const dir = await tempDir(t);
  const saved = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = dir;
  t.after(() => {
    if (saved === undefined) delete process.env.DOCKER_CONFIG;
    else process.env.DOCKER_CONFIG = saved;
  });
  await mkdir(dir, { recursive: true });
  const write = (auths: Record<string, unknown>): Promise<void> => writeFile(join(dir, 'config.json'), JSON.stringify({ auths }));
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const repo = { registry: reg.hostPort, repository: 'ns/app' };

  await write({ 'other.example:5000': { auth: b64('alice:s3cret') }, [reg.hostPort]: { auth: b64('alice:s3cret') } });
  const a = new RegistryClient({ retries: 0 });
  t.after(() => a.close());
  await a.blobs.upload(repo, Buffer.from('via host key'));

  // A host/namespace key, with scheme, in username/password form; credentials are re-read each time.
  await write({ [`http://${reg.hostPort}/ns`]: { username: 'alice', password: 's3cret' } });
  const b = new RegistryClient({ retries: 0 });
  t.after(() => b.close());
  await b.blobs.upload(repo, Buffer.from('via namespace key'));
  await assert.rejects(b.blobs.upload({ ...repo, repository: 'elsewhere/app' }, Buffer.from('x')), /401/);

  // Explicit credentials override the file.
  await write({ [reg.hostPort]: { auth: b64('alice:wrong') } });
  const c = new RegistryClient({ retries: 0, credentials: creds });
  t.after(() => c.close());
  await c.blobs.upload(repo, Buffer.from('explicit'));
  const d = new RegistryClient({ retries: 0 });
  t.after(() => d.close());
  await assert.rejects(d.blobs.upload(repo, Buffer.from('wrong')), /401/);
});

test('token mode server: a token grants only its scopes; tampered tokens are refused', async (t) => {
  const reg = await startEmbeddedRegistry(t, { auth: { kind: 'token', ...creds } });
  const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
  const tokenRes = await fetch(`${reg.url}/token?service=dadi-registry&scope=repository:a:pull`, { headers: { authorization: basic } });
  assert.equal(tokenRes.status, 200);
  const { token, expires_in: expiresIn } = await tokenRes.json() as { token: string; expires_in: number };
  assert.equal(expiresIn, 300);
  const bearer = { authorization: `Bearer ${token}` };
  assert.equal((await fetch(`${reg.url}/v2/`, { headers: bearer })).status, 200);
  const pull = await fetch(`${reg.url}/v2/a/tags/list`, { headers: bearer });
  assert.equal(pull.status, 404, 'allowed, and the repository does not exist');
  const other = await fetch(`${reg.url}/v2/b/tags/list`, { headers: bearer });
  assert.equal(other.status, 401);
  assert.equal(other.headers.get('www-authenticate'), `Bearer realm="${reg.url}/token",service="dadi-registry",scope="repository:b:pull"`);
  const push = await fetch(`${reg.url}/v2/a/blobs/uploads/`, { method: 'POST', headers: bearer });
  assert.equal(push.status, 401);
  assert.match(push.headers.get('www-authenticate') ?? '', /scope="repository:a:pull,push"/);
  const tampered = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
  const bad = await fetch(`${reg.url}/v2/a/tags/list`, { headers: { authorization: `Bearer ${tampered}` } });
  assert.equal(bad.status, 401);
  assert.match(await bad.text(), /token invalid or expired/);
  const noCreds = await fetch(`${reg.url}/token?service=dadi-registry&scope=repository:a:pull`);
  assert.equal(noCreds.status, 401);
});
