/**
 * The snapshotter's block paths beyond the shared read-only mount, against a real daemon and a
 * real docker-registry:
 * - rwMode `dev` returns the container's writable block device itself (ext4 over a dadi writable
 *   layer on the image), which the caller mounts; Commit seals it into a layer others stack on;
 * - rwMode `dir` with no parent makes a new ext4 disk (mkfs) of the labelled virtual size;
 * - a corrupt layer blob in the registry gives EIO for the reads it touches, never wrong bytes;
 * - a Remove of a writable disk still mounted by someone is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { isCode, type SnapshotsClient } from '../../../src/daemon/containerd/client.ts';
import { chainIds } from '../../../src/image/chain-id.ts';
import { requireSystem, vector } from '../../helpers/env.ts';
import { startDockerRegistry } from '../../helpers/registry.ts';
import { leftovers, startSnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { manifestTree } from '../../host/cli-support.ts';
import { buildObdImage, pushObdImage, type ObdImage } from '../../image/remote/fixture.ts';
import { mountAll, unmount } from './conformance.ts';

const run = promisify(execFile);
const HELLO = 'hello again, layer 2\n';

async function pull(sn: SnapshotsClient, img: ObdImage, ref: string): Promise<string> {
  const chain = chainIds(img.descriptors.map((d) => d.digest));
  for (const [i, d] of img.descriptors.entries()) {
    await assert.rejects(sn.prepare(`extract-${i} ${chain[i]}`, i === 0 ? '' : chain[i - 1]!,
      { 'containerd.io/snapshot.ref': chain[i]!, 'containerd.io/snapshot/cri.image-ref': ref, ...d.annotations }),
    (err: unknown) => isCode(err, grpc.status.ALREADY_EXISTS));
  }
  return chain[chain.length - 1]!;
}

async function scratch(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp('/tmp/dsk-');
  await mkdir(join(dir, 'm'));
  t.after(async () => {
    await unmount(join(dir, 'm')).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  return join(dir, 'm');
}

test('rwMode dev and dir: writable disks on an image and from nothing, sealed at Commit', async (t) => {
  if (!requireSystem(t, { commands: ['nbdfuse', 'losetup', 'mount', 'mkfs.ext4', 'docker-registry'], root: true, paths: ['/dev/fuse'] })) return;
  const reg = await startDockerRegistry(t);
  const img = await buildObdImage([vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')]);
  await pushObdImage(reg.hostPort, 'modes/vectors', 'v1', img);
  const d = await startSnapshotterDaemon(t);
  const sn = d.client;
  const top = await pull(sn, img, `${reg.hostPort}/modes/vectors:v1`);
  const m = await scratch(t);

  // dev: the block device itself, mounted by the caller.
  const dev = await sn.prepare('dev-rootfs', top, { 'containerd.io/snapshot/overlaybd.writable': 'dev' });
  assert.equal(dev.length, 1);
  assert.equal(dev[0]!.type, 'ext4');
  assert.match(dev[0]!.source, /^\/dev\/(loop|nbd)\d+$/);
  assert.deepEqual(dev[0]!.options, ['rw', 'discard']);
  await run('mount', ['-t', 'ext4', '-o', 'rw,discard', dev[0]!.source, m]);
  assert.equal(await readFile(join(m, 'etc/hello.txt'), 'utf8'), HELLO);
  await writeFile(join(m, 'etc/dev.txt'), 'written on the device\n');
  await assert.rejects(sn.remove('dev-rootfs'), (err: unknown) => isCode(err, grpc.status.FAILED_PRECONDITION) && /in use/.test((err as Error).message),
    'a disk the caller still mounts is not removed');
  await assert.rejects(sn.commit('dev-sealed', 'dev-rootfs'), (err: unknown) => isCode(err, grpc.status.FAILED_PRECONDITION),
    'nor committed');
  await unmount(m);
  await sn.commit('dev-sealed', 'dev-rootfs');
  await mountAll(await sn.view('dev-view', 'dev-sealed'), m);
  assert.equal(await readFile(join(m, 'etc/dev.txt'), 'utf8'), 'written on the device\n', 'the sealed layer holds the write');
  assert.equal(await readFile(join(m, 'etc/hello.txt'), 'utf8'), HELLO, 'over the image');
  await unmount(m);
  await sn.remove('dev-view');

  // dir with no parent: a new 1 GiB ext4 disk, bind mounted.
  const fresh = await sn.prepare('fresh', '', { 'containerd.io/snapshot/overlaybd.writable': 'dir', 'containerd.io/snapshot/overlaybd/vsize': '1' });
  assert.equal(fresh[0]!.type, 'bind');
  await mountAll(fresh, m);
  const { stdout } = await run('df', ['-B1', '--output=size', m]);
  const size = Number(stdout.split('\n')[1]);
  assert.ok(size > 0.9 * 2 ** 30 && size <= 2 ** 30, `a 1 GiB file system: ${size}`);
  await writeFile(join(m, 'new.txt'), 'on a new disk\n');
  await unmount(m);
  await sn.commit('fresh-sealed', 'fresh');
  await mountAll(await sn.prepare('on-fresh', 'fresh-sealed'), m);
  assert.equal(await readFile(join(m, 'new.txt'), 'utf8'), 'on a new disk\n');
  await unmount(m);

  for (const k of ['on-fresh', 'fresh-sealed', 'dev-sealed']) await sn.remove(k);
  assert.deepEqual(await leftovers(d.root), []);
});

test('a corrupt layer blob gives EIO for the reads it touches, never wrong bytes', async (t) => {
  if (!requireSystem(t, { commands: ['nbdfuse', 'losetup', 'mount', 'docker-registry'], root: true, paths: ['/dev/fuse'] })) return;
  const reg = await startDockerRegistry(t);
  const img = await buildObdImage([vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')]);
  await pushObdImage(reg.hostPort, 'corrupt/vectors', 'v1', img);
  // Corrupt the stored zstd ZFile layer past its header (docker-registry serves what it stored).
  const l2 = img.layers[1]!;
  const hex = l2.digest.slice('sha256:'.length);
  const stored = join(reg.root, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  const fh = await open(stored, 'r+');
  for (let off = 4096; off < l2.size - 64 * 1024; off += 1500) await fh.write(Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, off);
  await fh.close();
  const d = await startSnapshotterDaemon(t);
  const top = await pull(d.client, img, `${reg.hostPort}/corrupt/vectors:v1`);
  const m = await scratch(t);
  let mounted = true;
  try {
    await mountAll(await d.client.prepare('rootfs', top), m);
  } catch (err) {
    // The ext4 metadata itself may sit in a corrupt block: then the attach fails, with an I/O error.
    mounted = false;
    assert.match((err as Error).message, /cannot attach image|I\/O error|EIO|mount/i);
  }
  if (mounted) {
    let failed = 0;
    let good = 0;
    for (const [path, node] of Object.entries(await manifestTree())) {
      if (!node.sha256) continue;
      try {
        const data = await readFile(join(m, path));
        assert.equal(createHash('sha256').update(data).digest('hex'), node.sha256, `${path} read back wrong bytes`);
        good++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EIO') throw err;
        failed++;
      }
    }
    assert.ok(failed > 0, 'some read touched a corrupt block and failed with EIO');
    t.diagnostic(`${good} files read right, ${failed} failed with EIO`);
    await unmount(m);
    await d.client.remove('rootfs');
  }
  assert.deepEqual(await leftovers(d.root), []);
});
