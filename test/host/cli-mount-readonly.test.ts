/**
 * `dadi mount` / `dadi umount` end to end over the reference overlaybd ext4 layers: the real
 * `dadi serve`, nbdfuse, loop devices and kernel ext4. Read-only mounts and error paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MountRecord } from '../../src/host/state.ts';
import { requireSystem, runDadi, vector } from '../helpers/env.ts';
import { cliNeeds, dadi, L1, L2, manifestTree, mountJson, snapshot } from './cli-support.ts';
import { assertNothingLeft, hostScratch } from './support.ts';

test('the ext4 vectors mount (read-only by default) as exactly the manifest tree; umount leaves nothing', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, dir } = await hostScratch(t);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const rec = await mountJson(stateDir, [L1, L2, mnt]);
  assert.equal(rec.fsType, 'ext4');
  assert.equal(rec.readOnly, true, 'without a writable layer the mount is read-only');
  // Paths, modes, owners, sizes, contents, symlink targets and inode numbers (hard links share one).
  assert.deepEqual(await snapshot(mnt), await manifestTree());
  await assert.rejects(writeFile(join(mnt, 'x'), 'no'), /EROFS|read-only/i);

  const listed = JSON.parse(await dadi(stateDir, ['mount', '--list', '--json'])) as Array<MountRecord & { status: string }>;
  assert.deepEqual(listed.map((m) => [m.mountPoint, m.status, m.image]), [[rec.mountPoint, 'mounted', [L1, L2]]]);

  assert.equal(await dadi(stateDir, ['umount', mnt]), `unmounted ${rec.mountPoint}\n`);
  await assertNothingLeft(stateDir, rec);
});

test('mount errors are clear and leave nothing behind; umount of a non-dadi directory says so', async (t) => {
  if (!requireSystem(t, cliNeeds)) return;
  const { stateDir, dir } = await hostScratch(t);
  const env = { DADI_STATE_DIR: stateDir };

  let r = await runDadi(['mount', L1, L2, join(dir, 'missing')], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: check mount point: .*missing does not exist\n$/);

  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  // A layer whose bytes hold no file system (the payload-test vector).
  r = await runDadi(['mount', vector('A.lsmt'), mnt], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: detect file system: \/dev\/loop\d+ holds no known file system/);
  assert.deepEqual(await readdir(join(stateDir, 'mounts')), []);
  assert.deepEqual(await readdir(join(stateDir, 'work')), []);

  // A layer file that does not exist: the server's own error reaches the user, in one line;
  // the internal command line only with --verbose.
  r = await runDadi(['mount', join(dir, 'no-such.lsmt'), mnt], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: \S*no-such\.lsmt: no such layer file\n$/);
  r = await runDadi(['mount', '--verbose', join(dir, 'no-such.lsmt'), mnt], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: \S*no-such\.lsmt: no such layer file\nstart server: .*main\.(ts|js) serve .* exited \(code 1\) before listening/);
  assert.deepEqual(await readdir(join(stateDir, 'mounts')), []);

  r = await runDadi(['umount', mnt], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: umount: .*mnt is not a dadi mount/);
  r = await runDadi(['mount', L1], { env });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^dadi: dadi mount needs IMAGE \(or layer files\) and DIR \(see 'dadi mount --help'\)\n$/);
  assert.equal(await dadi(stateDir, ['mount', '--list']), '');
});
