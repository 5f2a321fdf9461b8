/**
 * `dadi serve REF --background-delay 0`: right after attach the server downloads every layer in
 * the background, verifies each blob's sha256 (the log says so per blob), and from then on a
 * full copy of the export fetches nothing from the registry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { dadiArgv, requireSystem, tempDir, vector } from '../../helpers/env.ts';
import { startFaultProxy } from '../../helpers/fault-proxy.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { assertExportEquals } from './compare.ts';
import { buildObdImage, pushObdImage } from './fixture.ts';

test('background download from dadi serve verifies every blob; afterwards a full nbdcopy fetches nothing and equals dadi cat', async (t) => {
  if (!requireSystem(t, { commands: ['nbdcopy', 'cmp'] })) return;
  const layers = [vector('A.lz4.bs4.tar.zlsmt'), vector('B.zstd.bs4.zlsmt')];
  const img = await buildObdImage(layers);
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', img);
  const proxy = await startFaultProxy(t, reg.url);
  const dir = await tempDir(t);
  const [cmd, argv] = dadiArgv(['serve', `${proxy.hostPort}/vec/ab:v1`, '--listen', `unix:${join(dir, 's.sock')}`,
    '--cache-dir', join(dir, 'cache'), '--refill-unit', '16K', '--background-delay', '0', '--background-rate', '0', '--json']);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DADI_LOG_LEVEL: 'info' } });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  const verified = new Set<string>();
  const allVerified = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const l of stderr.split('\n')) {
        if (!l.includes('background download complete and verified')) continue;
        verified.add((JSON.parse(l) as { digest: string }).digest);
      }
      if (img.layers.every((l) => verified.has(l.digest))) resolve();
    });
    void exited.then(() => reject(new Error(`dadi serve exited: ${stderr}`)));
    setTimeout(() => reject(new Error(`background downloads not verified in 30 s: ${stderr}`)), 30_000).unref();
  });
  await allVerified;
  const uri = (JSON.parse(stdout.slice(0, stdout.indexOf('\n'))) as { uri: string }).uri;

  proxy.log.length = 0;
  await assertExportEquals(t, uri, layers);
  assert.deepEqual(proxy.log.map((e) => e.url), [], 'nothing fetched after the background download');
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
});
