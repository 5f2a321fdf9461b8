/** `dadi registry serve` as a user runs it: prints its URL, serves the API, stops on SIGTERM. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { RegistryClient } from '../../src/registry/client.ts';
import { dadiArgv, runDadi, tempDir } from '../helpers/env.ts';
import { sampleImage } from './image-fixture.ts';
import { pushImage } from './push-pull-suite.ts';

async function serve(args: string[]): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const [cmd, argv] = dadiArgv(['registry', 'serve', ...args]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(http:\/\/\S+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit') as [number | null];
    return code;
  };
  return { url, stop };
}

test('dadi registry serve prints its URL, serves pushes and pulls, and exits 0 on SIGTERM', async (t) => {
  const root = await tempDir(t);
  const srv = await serve(['--root', root, '--listen', '127.0.0.1:0', '--auth', 'token:ci:pw']);
  t.after(() => srv.stop());
  assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const registry = srv.url.slice('http://'.length);
  const client = new RegistryClient({ credentials: { username: 'ci', password: 'pw' } });
  t.after(() => client.close());
  const image = await sampleImage(21);
  await pushImage(client, { registry, repository: 'cli/app' }, image, 'v1');
  assert.equal((await client.manifests.get({ registry, repository: 'cli/app' }, 'v1')).digest, image.digest);
  assert.equal(await srv.stop(), 0);

  // The data outlives the process: a new server on the same root serves it.
  const again = await serve(['--root', root, '--listen', '127.0.0.1:0']);
  t.after(() => again.stop());
  const open = new RegistryClient();
  t.after(() => open.close());
  assert.equal((await open.manifests.get({ registry: again.url.slice(7), repository: 'cli/app' }, 'v1')).digest, image.digest);
});

test('dadi registry serve rejects bad options with a clear message', async (t) => {
  const root = await tempDir(t);
  const bad = await runDadi(['registry', 'serve', '--root', root, '--listen', 'nowhere']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /dadi: invalid --listen "nowhere": expected HOST:PORT/);
  const auth = await runDadi(['registry', 'serve', '--root', root, '--auth', 'digest:a:b']);
  assert.equal(auth.code, 1);
  assert.match(auth.stderr, /expected basic:USER:PASS or token:USER:PASS/);
});
