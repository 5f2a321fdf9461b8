/**
 * `dadi serve REF --writable DIR`: a writable layer over a registry image. Writes land in DIR
 * (writable_data + writable_index) and survive a restart; elsewhere the image shows through.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireSystem, tempDir, vector } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { startServe } from '../../nbd/serve-process.ts';
import { qemuIo } from '../../nbd/tools.ts';
import { buildObdImage, pushObdImage } from './fixture.ts';

const run = promisify(execFile);

test('--writable over a registry image: writes persist across a restart and the image shows through elsewhere', async (t) => {
  if (!requireSystem(t, { commands: ['qemu-io'] })) return;
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'vec/ab', 'v1', await buildObdImage([vector('A.lz4.bs4.tar.zlsmt'), vector('B.zstd.bs4.zlsmt')]));
  const dir = await tempDir(t);
  const rw = join(dir, 'rw');
  await mkdir(rw);
  const serveArgs = (sock: string): string[] => [`${reg.hostPort}/vec/ab:v1`, '--listen', `unix:${join(dir, sock)}`,
    '--cache-dir', join(dir, 'cache'), '--no-background', '--writable', rw];

  const w1 = await startServe(t, serveArgs('1.sock'));
  assert.equal(w1.info.writable, true);
  assert.equal(w1.info.size, 1 << 30);
  await qemuIo(w1.info.uri, ['write -P 0x5a 1M 64K', 'read -P 0x5a 1M 64K', 'flush']);
  assert.equal(await w1.stop(), 0, w1.stderr());
  assert.deepEqual((await readdir(rw)).sort(), ['writable_data', 'writable_index']);

  const w2 = await startServe(t, serveArgs('2.sock'));
  await qemuIo(w2.info.uri, ['read -P 0x5a 1M 64K']);
  // Outside the written range the image shows through: layer B (on top) wrote payload.bin[824288:832480] at 0.
  const payload = await readFile(vector('payload.bin'));
  const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'read -v 0 16', w2.info.uri]);
  const hex = [...payload.subarray(824288, 824304)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  assert.ok(stdout.includes(hex), `qemu-io read of the lower image:\n${stdout}\nexpected ${hex}`);
  assert.equal(await w2.stop(), 0, w2.stderr());
});
