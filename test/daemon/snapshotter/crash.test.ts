/**
 * `kill -9` of the snapshotter daemon in the middle of Prepare, Commit and Remove (fault points
 * that make it SIGKILL itself at the worst moments), each followed by a restart on the same root:
 * the metadata holds either the old or the new state, the call can be repeated, devices the dead
 * process left (mounts, loop devices, nbdfuse) are torn down and re-attached for the snapshots
 * that need them, and after all of it the conformance suite passes and nothing is leaked.
 * Also proves rwMode=dir end to end: a writable disk on a dadi image, sealed at Commit (after a
 * crash between sealing and recording it), then a read-only layer a new snapshot stacks on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isCode, type SnapshotsClient } from '../../../src/daemon/containerd/client.ts';
import { FAULT_ENV } from '../../../src/daemon/snapshotter/faults.ts';
import { chainIds } from '../../../src/image/chain-id.ts';
import { requireSystem, vector } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { leftovers, startSnapshotterDaemon, type SnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { buildObdImage, pushObdImage, type ObdImage } from '../../image/remote/fixture.ts';
import { runConformance, mountAll, unmount } from './conformance.ts';

const HELLO = 'hello again, layer 2\n';

/** Prepares every layer of `img` the way containerd's unpacker does on a lazy pull. */
async function pullLayers(sn: SnapshotsClient, img: ObdImage, ref: string, upTo = img.layers.length): Promise<string[]> {
  const chain = chainIds(img.descriptors.map((d) => d.digest));
  for (let i = 0; i < upTo; i++) {
    const labels = { 'containerd.io/snapshot.ref': chain[i]!, 'containerd.io/snapshot/image-ref': ref, ...img.descriptors[i]!.annotations };
    await assert.rejects(sn.prepare(`extract-${i}-${Date.now()} ${chain[i]}`, i === 0 ? '' : chain[i - 1]!, labels),
      (err: unknown) => isCode(err, grpc.status.ALREADY_EXISTS), `layer ${i} is committed remotely`);
  }
  return chain;
}

/** Mounts the snapshot's mounts, runs `fn` on the mount, unmounts. */
async function withMounted<T>(sn: SnapshotsClient, key: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const base = await mkdtemp('/tmp/dsm-');
  const dir = join(base, 'm');
  await mkdir(dir);
  await mountAll(await sn.mounts(key), dir);
  try {
    return await fn(dir);
  } finally {
    await unmount(dir);
    await rm(base, { recursive: true, force: true });
  }
}

async function crashAt(d: SnapshotterDaemon, point: string, op: () => Promise<unknown>): Promise<void> {
  await d.kill('SIGTERM');
  await d.start({ [FAULT_ENV]: point });
  await assert.rejects(op(), (err: unknown) => isCode(err, grpc.status.UNAVAILABLE) || isCode(err, grpc.status.INTERNAL) || isCode(err, grpc.status.UNKNOWN),
    `the call dies with the daemon at ${point}`);
  assert.equal(await d.exited(), 'SIGKILL', `the daemon killed itself at ${point}`);
  await d.start();
}

/** Every directory under snapshots/ belongs to a snapshot the daemon lists (nothing half-made is left). */
async function assertNoOrphanDirs(d: SnapshotterDaemon): Promise<void> {
  const dirs = (await readdir(join(d.root, 'snapshots'))).sort();
  assert.ok(dirs.every((n) => /^\d+$/.test(n)), `only snapshot dirs: ${dirs.join(' ')}`);
  assert.equal(dirs.length, (await d.client.list()).length, 'one directory per snapshot');
}

test('kill -9 in Prepare, Commit and Remove: after a restart every call works again and nothing leaks', async (t) => {
  if (!requireSystem(t, { commands: ['nbdfuse', 'losetup', 'mount'], root: true, paths: ['/dev/fuse'] })) return;
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage([vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')]);
  await pushObdImage(reg.hostPort, 'crash/vectors', 'v1', img);
  const ref = `${reg.hostPort}/crash/vectors:v1`;
  const d = await startSnapshotterDaemon(t);
  const sn = d.client;

  // Lazy pull: killed after the remote layer is committed; the restarted daemon has it.
  const chain = chainIds(img.descriptors.map((x) => x.digest));
  await crashAt(d, 'prepare:after-remote-commit', () => sn.prepare(`extract-0 ${chain[0]}`, '',
    { 'containerd.io/snapshot.ref': chain[0]!, 'containerd.io/snapshot/image-ref': ref, ...img.descriptors[0]!.annotations }));
  assert.equal((await sn.stat(chain[0]!)).kind, 'COMMITTED');
  await pullLayers(sn, img, ref);
  const top = chain[chain.length - 1]!;

  // Killed inside the metadata transaction: nothing of the snapshot exists afterwards.
  await crashAt(d, 'insert:before-rename', () => sn.prepare('never', ''));
  await assert.rejects(sn.stat('never'), (err: unknown) => isCode(err, grpc.status.NOT_FOUND));
  await assertNoOrphanDirs(d);

  // Killed after the row is written but before the device is attached, and after it is attached
  // (the dead process leaves an ext4 mount, a loop device and nbdfuse behind): the restarted
  // daemon tears those down, attaches again, and the rootfs reads the image.
  await crashAt(d, 'prepare:after-insert', () => sn.prepare('rootfs-a', top));
  await crashAt(d, 'prepare:after-attach', () => sn.prepare('rootfs-b', top));
  for (const key of ['rootfs-a', 'rootfs-b']) {
    assert.equal(await withMounted(sn, key, (dir) => readFile(join(dir, 'etc/hello.txt'), 'utf8')), HELLO, `${key} reads the image`);
  }

  // Commit: killed before and after the metadata changes.
  await sn.prepare('plain-active', '');
  await withMounted(sn, 'plain-active', (dir) => writeFile(join(dir, 'file'), 'content\n'));
  await crashAt(d, 'commit:before-db', () => sn.commit('plain', 'plain-active'));
  assert.equal((await sn.stat('plain-active')).kind, 'ACTIVE', 'not committed yet');
  await crashAt(d, 'commit:after-db', () => sn.commit('plain', 'plain-active'));
  assert.equal((await sn.stat('plain')).kind, 'COMMITTED', 'committed before the crash');
  await assert.rejects(sn.stat('plain-active'), (err: unknown) => isCode(err, grpc.status.NOT_FOUND));

  // Remove: killed before the metadata changes, after the directory moved aside, after the row went.
  await crashAt(d, 'remove:before-db', () => sn.remove('rootfs-a'));
  assert.equal((await sn.stat('rootfs-a')).kind, 'ACTIVE');
  await crashAt(d, 'remove:after-rename', () => sn.remove('rootfs-a'));
  await assert.rejects(sn.stat('rootfs-a'), (err: unknown) => isCode(err, grpc.status.NOT_FOUND));
  await crashAt(d, 'remove:after-db', () => sn.remove('rootfs-b'));
  await assert.rejects(sn.stat('rootfs-b'), (err: unknown) => isCode(err, grpc.status.NOT_FOUND));
  await assertNoOrphanDirs(d);

  // rwMode dir: a writable disk on the image; Commit seals it (crash between seal and record).
  const w = await sn.prepare('writable', top, { 'containerd.io/snapshot/overlaybd.writable': 'dir' });
  assert.equal(w[0]!.type, 'bind');
  await withMounted(sn, 'writable', async (dir) => {
    assert.equal(await readFile(join(dir, 'etc/hello.txt'), 'utf8'), HELLO, 'the writable disk holds the image');
    await writeFile(join(dir, 'etc/written.txt'), 'written in the writable layer\n');
  });
  await crashAt(d, 'commit:after-seal', () => sn.commit('sealed', 'writable'));
  await sn.commit('sealed', 'writable');
  const sealed = await sn.stat('sealed');
  assert.match(sealed.labels['containerd.io/snapshot/overlaybd.localcommitpath'] ?? '', /fs\/overlaybd\.sealed$/);
  await sn.prepare('on-sealed', 'sealed');
  assert.equal(await withMounted(sn, 'on-sealed', (dir) => readFile(join(dir, 'etc/written.txt'), 'utf8')),
    'written in the writable layer\n', 'a container on the sealed layer sees what was written');
  assert.equal(await withMounted(sn, 'on-sealed', (dir) => readFile(join(dir, 'etc/hello.txt'), 'utf8')), HELLO);

  // After all of it: the suite passes on the same daemon, and removing everything leaves nothing.
  await runConformance(sn, 'after-crash');
  for (const key of ['on-sealed', 'sealed', 'plain', ...chain.slice().reverse()]) await sn.remove(key);
  assert.deepEqual((await sn.list()).map((i) => i.name), []);
  await assertNoOrphanDirs(d);
  assert.deepEqual(await leftovers(d.root), []);
});
