/**
 * Containers from dadi images with real containerd 1.6 + runc, a real docker-registry (behind a
 * byte-counting proxy) and the dadi snapshotter daemon registered as a proxy plugin:
 * - `dadi pull` and `ctr-remote image rpull` (with the start) each fetch under 10% of the image's layer bytes, and
 *   `ctr run --snapshotter dadi` then reads files from every layer (bottom, whiteout, top);
 * - overlaybd's own ext4 layers, pulled lazily, give a rootfs with the vectors' file tree;
 * - an ordinary gzip image runs through the same snapshotter (pulled and unpacked by containerd);
 * - two containers of one image share one ext4 mount while their writes stay apart, and Remove
 *   of a snapshot in use is refused;
 * - with the registry gone, the rootfs Prepare fails naming the image and the registry.
 * Each part gets a fresh daemon (empty cache) and a fresh containerd.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ContainerdClient, isCode } from '../../../src/daemon/containerd/client.ts';
import { requireSystem, runDadi } from '../../helpers/env.ts';
import { startContainerd, type Containerd } from '../../helpers/containerd.ts';
import { leftovers, startSnapshotterDaemon, type SnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { manifestTree, snapshot } from '../../host/cli-support.ts';
import { mountAll, unmount } from './conformance.ts';
import { PROOF_CMD, PROOF_OUT, publishImages, type PublishedImages } from './images.ts';

interface Node { daemon: SnapshotterDaemon; ctd: Containerd }

async function node(t: TestContext, img: PublishedImages): Promise<Node> {
  img.proxy.reset();
  const daemon = await startSnapshotterDaemon(t);
  const ctd = await startContainerd(t, { proxyPlugins: { dadi: daemon.address } });
  return { daemon, ctd };
}

async function dadiPull(n: Node, ref: string): Promise<void> {
  const r = await runDadi(['pull', '--address', n.ctd.socket, '--namespace', n.ctd.namespace, '--snapshotter', 'dadi', ref]);
  assert.equal(r.code, 0, `dadi pull failed: ${r.stderr}`);
}

/** containerd removes snapshots in its garbage collection, a moment after the container goes. */
async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * containerd's gRPC connection to a restarted proxy snapshotter comes back after its reconnect
 * backoff; until then calls fail fast with the last dial error. Wait for it as kubelet's retries do.
 */
async function reconnected(n: Node): Promise<void> {
  const up = () => n.ctd.ctr(['snapshots', '--snapshotter', 'dadi', 'ls']).then(() => true, () => false);
  assert.ok(await eventually(up, (ok) => ok, 30_000), 'containerd reaches the restarted snapshotter');
}

/** The ext4 (or other non-overlay) device mounts under the daemon's root. */
async function deviceMounts(root: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter((l) => l.split(' ')[4]?.startsWith(`${root}/`) && / - ext4 /.test(l)).map((l) => l.split(' ')[4]!);
}

test('containers run from dadi images through the dadi snapshotter', async (t) => {
  if (!requireSystem(t, { commands: ['containerd', 'ctr', 'runc', 'ctr-remote', 'docker-registry', 'skopeo', 'nbdfuse', 'mkfs.ext4'], root: true, paths: ['/dev/fuse', '/bin/busybox'] })) return;
  const img: PublishedImages = await publishImages(t);
  const tenth = img.obdLayers.bytes / 10;

  await t.test('dadi pull fetches only layer indexes; ctr run reads every layer and pull + start fetch under 10%', async (t) => {
    const n = await node(t, img);
    await dadiPull(n, img.obd);
    // The pull moves no layer data; the snapshotter only fetches each layer's header and index early.
    const atPull = img.proxy.bytesFor(img.obdLayers.digests);
    assert.ok(atPull < img.obdLayers.bytes / 20, `the pull fetched ${atPull} of ${img.obdLayers.bytes} layer bytes`);
    const out = await n.ctd.ctr(['run', '--rm', '--snapshotter', 'dadi', img.obd, 'dp1', ...PROOF_CMD]);
    assert.equal(out, PROOF_OUT);
    const fetched = img.proxy.bytesFor(img.obdLayers.digests);
    assert.ok(fetched > 0 && fetched < tenth, `the start fetched ${fetched} of ${img.obdLayers.bytes} layer bytes`);
    t.diagnostic(`dadi pull + run fetched ${fetched} of ${img.obdLayers.bytes} layer bytes (${(100 * fetched / img.obdLayers.bytes).toFixed(1)}%)`);
    // Every converted layer has a chunk digest table: the daemon took it from the snapshot labels,
    // checked it against its annotation digest, verified the fetched chunks and kept it by the cache.
    const tables = await Promise.all(img.obdLayers.digests.map((d) => access(join(n.daemon.cacheDir, 'blobs', 'sha256', `${d.slice(7)}.table`)).then(() => d, () => undefined)));
    assert.deepEqual(tables, img.obdLayers.digests, 'the daemon verified every layer against its digest table');
    assert.deepEqual(await eventually(() => deviceMounts(n.daemon.root), (m) => m.length === 0), [], 'the image device is detached once its last container is gone');
    img.proxy.reset();
  });

  await t.test('ctr-remote image rpull --snapshotter dadi pulls lazily and the image runs', async (t) => {
    const n = await node(t, img);
    await n.ctd.ctr(['image', 'rpull', '--plain-http', '--snapshotter', 'dadi', img.obd], { bin: 'ctr-remote' });
    const atPull = img.proxy.bytesFor(img.obdLayers.digests);
    assert.ok(atPull < img.obdLayers.bytes / 20, `rpull fetched ${atPull} of ${img.obdLayers.bytes} layer bytes`);
    const out = await n.ctd.ctr(['run', '--rm', '--snapshotter', 'dadi', img.obd, 'rp1', ...PROOF_CMD]);
    assert.equal(out, PROOF_OUT);
    const fetched = img.proxy.bytesFor(img.obdLayers.digests);
    assert.ok(fetched < tenth, `rpull + run fetched ${fetched} of ${img.obdLayers.bytes} layer bytes`);
    img.proxy.reset();
  });

  await t.test('overlaybd ext4 vectors pulled lazily give a rootfs with the manifest file tree', async (t) => {
    const n = await node(t, img);
    await dadiPull(n, img.vectors);
    const top = (await n.ctd.ctr(['snapshots', '--snapshotter', 'dadi', 'ls'])).split('\n').slice(1).filter(Boolean)
      .map((l) => l.split(/\s+/)).find((f) => f[1] !== '' && f[2] === 'Committed' && f[1]?.startsWith('sha256:'));
    assert.ok(top, 'committed layer snapshots are listed');
    // Under a lease, or containerd's garbage collector takes the unreferenced snapshot away.
    const client = new ContainerdClient(n.ctd.socket, n.ctd.namespace);
    t.after(async () => { await client.deleteLease().catch(() => {}); client.close(); });
    await client.createLease('vectors-test', 600);
    const sn = client.snapshots('dadi');
    const chainTop = (await sn.list()).find((i) => !(i.parent === '') && i.kind === 'COMMITTED')!.name;
    const mounts = await sn.prepare('vectors-rootfs', chainTop);
    const dir = await mkdtemp('/tmp/dsv-');
    await mkdir(join(dir, 'm'));
    await mountAll(mounts, join(dir, 'm'));
    try {
      const want = Object.fromEntries(Object.entries(await manifestTree()).map(([p, nd]) => [p, { ...nd, inode: 0 }]));
      const got = Object.fromEntries(Object.entries(await snapshot(join(dir, 'm'))).map(([p, nd]) => [p, { ...nd, inode: 0 }]));
      assert.deepEqual(got, want);
    } finally {
      await unmount(join(dir, 'm'));
      await rm(dir, { recursive: true, force: true });
    }
    await sn.remove('vectors-rootfs');
    assert.ok(img.proxy.bytesFor(img.vectorLayers.digests) < img.vectorLayers.bytes, 'the vectors were read lazily');
    img.proxy.reset();
  });

  await t.test('an ordinary gzip OCI image is pulled, unpacked and run through the same snapshotter', async (t) => {
    const n = await node(t, img);
    await n.ctd.ctr(['image', 'pull', '--plain-http', '--snapshotter', 'dadi', img.oci]);
    const out = await n.ctd.ctr(['run', '--rm', '--snapshotter', 'dadi', img.oci, 'oci1', ...PROOF_CMD]);
    assert.equal(out, PROOF_OUT);
    assert.deepEqual(await deviceMounts(n.daemon.root), [], 'no device for an ordinary image');
    img.proxy.reset();
  });

  await t.test('two containers of one image share one ext4 mount, their writes stay apart, and Remove in use is refused', async (t) => {
    const n = await node(t, img);
    await dadiPull(n, img.obd);
    for (const id of ['c1', 'c2']) await n.ctd.ctr(['run', '-d', '--snapshotter', 'dadi', img.obd, id, '/bin/sleep', '600']);
    t.after(async () => {
      for (const id of ['c1', 'c2']) {
        await n.ctd.ctr(['tasks', 'kill', '-s', 'KILL', id]).catch(() => {});
        await n.ctd.ctr(['tasks', 'rm', '-f', id]).catch(() => {});
        await n.ctd.ctr(['containers', 'rm', id]).catch(() => {});
      }
    });
    assert.equal((await deviceMounts(n.daemon.root)).length, 1, 'one ext4 mount for both containers');
    await n.ctd.ctr(['tasks', 'exec', '--exec-id', 'w1', 'c1', '/bin/sh', '-c', 'echo one > /mine.txt; echo changed > /bottom.txt']);
    await n.ctd.ctr(['tasks', 'exec', '--exec-id', 'w2', 'c2', '/bin/sh', '-c', 'echo two > /mine.txt']);
    assert.equal(await n.ctd.ctr(['tasks', 'exec', '--exec-id', 'r1', 'c1', '/bin/cat', '/mine.txt', '/bottom.txt']), 'one\nchanged\n');
    assert.equal(await n.ctd.ctr(['tasks', 'exec', '--exec-id', 'r2', 'c2', '/bin/cat', '/mine.txt', '/bottom.txt']), 'two\nfrom the bottom layer\n');
    // The daemon refuses to remove a running container's snapshot (its overlay is mounted).
    const active = (await n.daemon.client.list(['kind==active'])).map((i) => i.name);
    assert.equal(active.length, 2);
    await assert.rejects(n.daemon.client.remove(active[0]!), (err: unknown) => isCode(err, grpc.status.FAILED_PRECONDITION) && /in use/.test((err as Error).message));
    for (const id of ['c1', 'c2']) {
      await n.ctd.ctr(['tasks', 'kill', '-s', 'KILL', id]);
      await n.ctd.ctr(['tasks', 'rm', '-f', id]);
      await n.ctd.ctr(['containers', 'rm', id]);
    }
    assert.deepEqual(await eventually(() => deviceMounts(n.daemon.root), (m) => m.length === 0), [], 'the shared mount goes with the last container');
    assert.deepEqual(await eventually(() => leftovers(n.daemon.root), (l) => l.length === 0), []);
    img.proxy.reset();
  });

  await t.test('with the registry gone, the rootfs Prepare fails naming the image and the registry', async (t) => {
    const n = await node(t, img);
    await dadiPull(n, img.obd);
    // A node whose cache lost the image (evicted, or a new disk) while the registry is down.
    await n.daemon.kill('SIGTERM');
    await rm(n.daemon.cacheDir, { recursive: true, force: true });
    await n.daemon.start();
    await reconnected(n);
    await img.registry.stop();
    await assert.rejects(n.ctd.ctr(['run', '--rm', '--snapshotter', 'dadi', img.obd, 'gone1', '/bin/sh', '-c', 'true']), (err: Error) => {
      assert.match(err.message, new RegExp(`cannot attach image ${img.obd.replace(/[.]/g, '\\.')} from registry ${img.proxy.hostPort}`));
      return true;
    });
    assert.deepEqual(await leftovers(n.daemon.root), []);
  });
});
