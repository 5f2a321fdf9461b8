/**
 * `dadi mount REF DIR` of a registry image: the reference ext4 layers pushed as an overlaybd image
 * into the embedded registry, attached lazily by the mount's own `dadi serve`, mounted through
 * nbdfuse + loop + kernel ext4, and compared with the manifest's file tree; with --writable,
 * a file written on top survives an unmount and a fresh mount.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireSystem } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { cliNeeds, dadi, L1, L2, manifestTree, mountJson, snapshot } from '../../host/cli-support.ts';
import { assertNothingLeft, hostScratch } from '../../host/support.ts';
import { buildObdImage, pushObdImage } from './fixture.ts';

test('dadi mount REF DIR mounts a registry image as the manifest tree; --writable keeps writes across mounts', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'vec/ext4', 'v1', await buildObdImage([L1, L2]));
  const ref = `${reg.hostPort}/vec/ext4:v1`;
  const { stateDir, dir } = await hostScratch(t);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const cache = join(dir, 'cache');

  const rec = await mountJson(stateDir, ['--cache-dir', cache, '--no-background', ref, mnt]);
  assert.equal(rec.fsType, 'ext4');
  assert.equal(rec.readOnly, true);
  assert.deepEqual(rec.image, [ref]);
  assert.ok(rec.server.argv.includes('--cache-dir') && rec.server.argv.includes(cache), 'the server got the cache directory');
  assert.deepEqual(await snapshot(mnt), await manifestTree());
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, rec);

  const rw = join(dir, 'rw');
  await mkdir(rw);
  const w = await mountJson(stateDir, ['--cache-dir', cache, '--writable', rw, ref, mnt]);
  assert.equal(w.readOnly, false);
  await writeFile(join(mnt, 'etc', 'added.txt'), 'written over a registry image\n');
  assert.equal(await readFile(join(mnt, 'etc', 'hello.txt'), 'utf8').then((s) => s.length), 21);
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, w);

  const again = await mountJson(stateDir, ['--cache-dir', cache, '--writable', rw, ref, mnt]);
  assert.equal(await readFile(join(mnt, 'etc', 'added.txt'), 'utf8'), 'written over a registry image\n');
  await dadi(stateDir, ['umount', mnt]);
  await assertNothingLeft(stateDir, again);
});
