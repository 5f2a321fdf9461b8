/**
 * Registries for tests: the embedded one (in-process) and the real `docker-registry` (Debian's
 * distribution 2.x, started with a generated config on a free loopback port). Both are stopped
 * by t.after.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
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

/**
 * The `docker-registry` daemon, filesystem storage in a temp dir, deletes enabled. With
 * `tokenAuth`, it runs distribution's token auth against a small token server started here
 * (RS256 JWTs signed with a throwaway key whose self-signed certificate is the trusted root;
 * needs `openssl`). The token server grants every scope asked for to the given user.
 */
export async function startDockerRegistry(t: TestContext, opts: {
  tokenAuth?: { username: string; password: string };
  /** Run as a pull-through cache of this registry URL (`proxy.remoteurl`). */
  proxyRemoteUrl?: string;
} = {}):
Promise<TestRegistry & { tokensIssued: () => number }> {
  const root = await tempDir(t, 'dadi-docker-registry-');
  const port = await freePort();
  const config = join(root, 'config.yml');
  const auth = opts.tokenAuth ? await startTokenServer(t, root, opts.tokenAuth) : undefined;
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
    ...(opts.proxyRemoteUrl ? ['proxy:', `  remoteurl: ${opts.proxyRemoteUrl}`] : []),
    ...(auth ? [
      'auth:',
      '  token:',
      `    realm: ${auth.realm}`,
      `    service: ${TOKEN_SERVICE}`,
      `    issuer: ${TOKEN_ISSUER}`,
      `    rootcertbundle: ${auth.certFile}`,
    ] : []),
    '',
  ].join('\n'));
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const url = `http://127.0.0.1:${port}`;
  const stop = (): Promise<void> => stopChild(child);
  t.after(stop);
  await waitForHttp(`${url}/v2/`, child, () => stderr);
  return { url, hostPort: `127.0.0.1:${port}`, root, stop, tokensIssued: () => auth?.issued() ?? 0 };
}

const TOKEN_SERVICE = 'docker-registry-test';
const TOKEN_ISSUER = 'dadi-test-issuer';

async function startTokenServer(t: TestContext, dir: string, user: { username: string; password: string }):
Promise<{ realm: string; certFile: string; issued: () => number }> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '1', '-subj', '/CN=dadi-test-token-issuer']);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = Buffer.from((await readFile(certFile, 'utf8')).replace(/-----[^-]+-----|\s+/g, ''), 'base64');
  const expected = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;
  let issued = 0;
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="token"' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const access = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).map((s) => {
      const [type, name, actions] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1, s.lastIndexOf(':')), s.slice(s.lastIndexOf(':') + 1)];
      return { type, name, actions: actions.split(',') };
    });
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const head = b64({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] });
    const body = b64({ iss: TOKEN_ISSUER, sub: user.username, aud: url.searchParams.get('service') ?? TOKEN_SERVICE,
      exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access });
    const token = `${head}.${body}.${sign('sha256', Buffer.from(`${head}.${body}`), key).toString('base64url')}`;
    issued++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }));
  const port = (server.address() as { port: number }).port;
  return { realm: `http://127.0.0.1:${port}/token`, certFile, issued: () => issued };
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
