/**
 * The attach/mount/teardown machinery against a real NBD server (nbdkit serving a raw ext4
 * image on a unix socket), real nbdfuse, loop devices and kernel ext4 — independent of dadi's
 * own server, which the CLI tests cover.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { listMounts, mountImage, unmountImage } from '../../src/host/image-mount.ts';
import { loopsBackedBy } from '../../src/host/loop-device.ts';
import { mountAt } from '../../src/host/mount-table.ts';
import { isRunning } from '../../src/host/processes.ts';
import { listRecords, recordPath } from '../../src/host/state.ts';
import { requireSystem } from '../helpers/env.ts';
import { assertNothingLeft, hostNeeds, hostScratch, makeExt4Image } from './support.ts';

const nbdkit = (image: string, readOnly: boolean) => (socket: string) =>
  ['nbdkit', '--foreground', ...(readOnly ? ['--readonly'] : []), '--unix', socket, 'file', image];

/** A fresh state dir, an ext4 image of `mib` MiB and an empty mount point. */
async function ext4Scratch(t: TestContext, mib: number): Promise<{ stateDir: string; image: string; mnt: string }> {
  const { stateDir, dir } = await hostScratch(t);
  const image = join(dir, 'disk.img');
  makeExt4Image(image, mib);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  return { stateDir, image, mnt };
}

function debugfsCat(image: string, path: string): string {
  const r = spawnSync('debugfs', ['-R', `cat ${path}`, image], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('a writable ext4 image served by nbdkit mounts, takes writes, and unmounts leaving nothing behind', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit', 'debugfs'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 32);

  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, false), readOnly: false, stateDir });
  assert.equal(rec.fsType, 'ext4');
  assert.equal(rec.attach?.kind, 'nbdfuse');
  assert.match(rec.device ?? '', /^\/dev\/loop\d+$/);
  const m = await mountAt(mnt);
  assert.equal(m?.source, rec.device);
  assert.equal(m?.fsType, 'ext4');
  assert.ok(existsSync(recordPath(stateDir, mnt)));
  const listed = await listMounts({ stateDir });
  assert.deepEqual(listed.map((x) => [x.mountPoint, x.status]), [[mnt, 'mounted']]);

  await writeFile(join(mnt, 'hello.txt'), 'written through nbdfuse\n');
  const back = await unmountImage(mnt, { stateDir });
  await assertNothingLeft(stateDir, back);
  // The write reached the image behind the server (the file system was cleanly unmounted).
  assert.equal(debugfsCat(image, '/hello.txt'), 'written through nbdfuse\n');
});

test('a read-only mount refuses writes', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: true, stateDir });
  assert.match((await mountAt(mnt))?.source ?? '', /^\/dev\/loop/);
  await assert.rejects(writeFile(join(mnt, 'x'), 'no'), /EROFS|read-only/i);
  await unmountImage(mnt, { stateDir });
  await assertNothingLeft(stateDir, rec);
});

test('a read-only export asked to mount writable is mounted read-only and recorded so', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: false, stateDir });
  assert.equal(rec.readOnly, true);
  await assert.rejects(writeFile(join(mnt, 'x'), 'no'), /EROFS|read-only/i);
  await unmountImage(mnt, { stateDir });
  await assertNothingLeft(stateDir, rec);
});

test('an image with no file system is refused with a clear error and nothing is left running', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, dir } = await hostScratch(t);
  const image = join(dir, 'blank.img');
  await writeFile(image, '');
  await truncate(image, 8 << 20);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  await assert.rejects(
    mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: true, stateDir }),
    /detect file system: \/dev\/loop\d+ holds no known file system/,
  );
  assert.deepEqual(await listRecords(stateDir), []);
  assert.equal(await mountAt(mnt), undefined);
  assert.deepEqual(await readdir(join(stateDir, 'work')).catch(() => []), [], 'the work directory remains');
});

test('a missing mount point fails before anything starts; a server that dies at once is reported with its output', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, dir } = await hostScratch(t);
  const image = join(dir, 'disk.img');
  makeExt4Image(image, 16);
  await assert.rejects(
    mountImage({ mountPoint: join(dir, 'nope'), image: [image], server: nbdkit(image, true), readOnly: true, stateDir }),
    /check mount point: .*nope does not exist/,
  );
  assert.deepEqual(await listRecords(stateDir), []);

  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  await assert.rejects(
    mountImage({ mountPoint: mnt, image: [image], server: () => ['sh', '-c', 'echo cannot open the layer >&2; exit 3'], readOnly: true, stateDir }),
    /start server: .*exited \(code 3\) before listening: cannot open the layer/,
  );
  assert.deepEqual(await listRecords(stateDir), []);
});

test('umount of a directory that is not a dadi mount says so', async (t) => {
  if (!requireSystem(t, hostNeeds)) return;
  const { stateDir, dir } = await hostScratch(t);
  await assert.rejects(unmountImage(dir, { stateDir }), /is not a dadi mount \(no record in /);
});

test('after kill -9 of the server, umount still cleans up everything', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, false), readOnly: false, stateDir });
  process.kill(rec.server.identity!.pid, 'SIGKILL');
  while (isRunning(rec.server.identity)) await new Promise((r) => setTimeout(r, 10));
  await unmountImage(mnt, { stateDir });
  await assertNothingLeft(stateDir, rec);
});

test('a stale record whose processes died (e.g. after a crash of dadi mount) is cleaned by umount', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: true, stateDir });
  // Simulate a crash: everything is torn down behind dadi's back, only the record remains.
  spawnSync('umount', [mnt]);
  if (rec.attach?.kind === 'nbdfuse') {
    spawnSync('losetup', ['-d', rec.device!]);
    spawnSync('fusermount3', ['-u', rec.attach.fuseDir]);
  }
  process.kill(rec.server.identity!.pid, 'SIGKILL');
  while (isRunning(rec.server.identity)) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual((await listMounts({ stateDir })).map((x) => x.status), ['stale']);
  // A new mount of the same DIR is refused until the stale record is cleaned.
  await assert.rejects(mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: true, stateDir }), /already has a dadi mount record/);
  await unmountImage(mnt, { stateDir });
  await assertNothingLeft(stateDir, rec);
});

test('a busy mount is not torn down unless forced; forced, it is detached lazily and released when the user lets go', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  const rec = await mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, false), readOnly: false, stateDir });
  const fh = await open(join(mnt, 'held.txt'), 'w');
  t.after(() => fh.close().catch(() => undefined));
  await assert.rejects(unmountImage(mnt, { stateDir }), /unmount: umount .* failed; close what uses it or pass --force: .*busy/);
  // Nothing below the busy file system was touched.
  assert.equal((await mountAt(mnt))?.source, rec.device);
  assert.ok(isRunning(rec.server.identity));
  assert.equal((await listMounts({ stateDir }))[0]?.status, 'mounted');

  await unmountImage(mnt, { stateDir, force: true });
  await fh.close().catch(() => undefined);
  assert.equal(await mountAt(mnt), undefined);
  assert.equal(isRunning(rec.server.identity), false);
  assert.deepEqual(await listRecords(stateDir), []);
  // The loop device frees itself (autoclear) once the last user is gone.
  const fuseFile = rec.attach?.kind === 'nbdfuse' ? join(rec.attach.fuseDir, 'nbd') : '';
  for (let i = 0; i < 200 && (await loopsBackedBy(fuseFile)).length > 0; i++) await new Promise((r) => setTimeout(r, 25));
  assert.deepEqual(await loopsBackedBy(fuseFile), []);
});

test('a mount(8) failure after the loop device is attached undoes everything and quotes mount', async (t) => {
  if (!requireSystem(t, { ...hostNeeds, commands: [...hostNeeds.commands, 'nbdkit'] })) return;
  const { stateDir, image, mnt } = await ext4Scratch(t, 16);
  await assert.rejects(
    mountImage({ mountPoint: mnt, image: [image], server: nbdkit(image, true), readOnly: true, stateDir, mountOptions: ['no_such_mount_option'] }),
    /^HostStepError: mount: mount -t ext4 -o ro,no_such_mount_option \/dev\/loop\d+ .* failed \(exit \d+\): .+/,
  );
  assert.deepEqual(await listRecords(stateDir), []);
  assert.equal(await mountAt(mnt), undefined);
  assert.deepEqual(await readdir(join(stateDir, 'work')), []);
  // No loop device is left pointing into the (removed) work directory.
  for (const name of (await readdir('/sys/block')).filter((n) => n.startsWith('loop'))) {
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    assert.ok(!backing.startsWith(stateDir), `${name} still backed by ${backing}`);
  }
});
