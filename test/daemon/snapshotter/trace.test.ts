/**
 * Trace record and replay through real containerd 1.6 + runc, the dadi snapshotter daemon and a
 * real docker-registry (behind a byte-counting proxy), each start on a fresh daemon (empty cache):
 * - a start with the record-trace labels writes an overlaybd trace (and `.ok`) when its
 *   container's snapshot is removed; a second start of the same container reads blocks that the
 *   first trace covers (at least 95% of them);
 * - a start replaying that trace misses the cache at least 80% less often than a start without,
 *   demand reads hit prefetched data, no blob byte is fetched twice, and the replay stops when
 *   the image is detached;
 * - `dadi record-trace IMAGE NEW_IMAGE -- CMD` pushes NEW_IMAGE with an acceleration layer carrying
 *   overlaybd's annotations, and a cold start of NEW_IMAGE (pulled by ctr-remote rpull, which
 *   unpacks the trace) replays it with no label: demand misses drop at least 80% again;
 * - a list of paths at the trace path prefetches those files (whole directories for `dir/`);
 * - `dadi record-trace --timeout` ends a command that never exits and pushes what it read.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeTrace, type TraceRecord } from '../../../src/image/trace/format.ts';
import { RegistryClient } from '../../../src/registry/client.ts';
import { requireSystem, runDadi, tempDir } from '../../helpers/env.ts';
import { startContainerd, type Containerd } from '../../helpers/containerd.ts';
import { startSnapshotterDaemon, type SnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { publishImages, type PublishedImages } from './images.ts';

const RECORD = 'containerd.io/snapshot/overlaybd/record-trace';
const RECORD_PATH = 'containerd.io/snapshot/overlaybd/record-trace-path';
/**
 * A start that reads a few files, 20 scattered 64 KiB pieces of one (each a separate cache miss
 * without a trace) and the first MB of another: what an application's start looks like.
 */
const START_CMD = ['/bin/sh', '-c', 'cat /bottom.txt /etc/top.txt >/dev/null; ' +
  'for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do /bin/busybox dd if=/filler/base.bin of=/dev/null bs=65536 count=1 skip=$((i*19)) 2>/dev/null; done; ' +
  '/bin/busybox head -c 1000000 /filler/top.bin >/dev/null; ls /etc >/dev/null; echo started'];

interface Node { daemon: SnapshotterDaemon; ctd: Containerd }

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

type LogLine = Record<string, unknown> & { msg: string };
async function logLines(n: Node): Promise<LogLine[]> {
  return (await n.daemon.log()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

/** Runs START_CMD once on a fresh daemon with `labels`; resolves with the daemon's detach line. */
async function start(t: TestContext, img: PublishedImages, id: string, labels: Record<string, string>, ref = img.obd): Promise<{ n: Node; detached: LogLine; fetched: number }> {
  img.proxy.reset();
  const daemon = await startSnapshotterDaemon(t);
  const ctd = await startContainerd(t, { proxyPlugins: { dadi: daemon.address } });
  const n = { daemon, ctd };
  if (ref === img.obd) {
    const pull = await runDadi(['pull', '--address', ctd.socket, '--namespace', ctd.namespace, '--snapshotter', 'dadi', ref]);
    assert.equal(pull.code, 0, `dadi pull failed: ${pull.stderr}`);
  } else {
    // An acceleration layer is unpacked by containerd (its trace file), as overlaybd's rpull does it.
    await ctd.ctr(['image', 'rpull', '--plain-http', '--snapshotter', 'dadi', ref], { bin: 'ctr-remote' });
  }
  const before = (await logLines(n)).filter((l) => l.msg === 'detached').length;
  const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--snapshotter-label', `${k}=${v}`]);
  const out = await ctd.ctr(['run', '--rm', '--snapshotter', 'dadi', ...labelArgs, ref, id, ...START_CMD]);
  assert.equal(out, 'started\n');
  const lines = await eventually(() => logLines(n), (ls) => ls.filter((l) => l.msg === 'detached').length > before);
  const detached = lines.filter((l) => l.msg === 'detached')[before];
  assert.ok(detached, 'the image device detaches once the container is gone');
  return { n, detached, fetched: img.proxy.bytesFor(img.obdLayers.digests) };
}

/** The 4 KiB blocks (layer:block) a trace names. */
function blocks(records: readonly TraceRecord[]): Set<string> {
  const out = new Set<string>();
  for (const r of records) for (let b = Math.floor(r.offset / 4096); b * 4096 < r.offset + r.length; b++) out.add(`${r.layer}:${b}`);
  return out;
}

async function recordTrace(t: TestContext, img: PublishedImages, dir: string, name: string): Promise<{ records: TraceRecord[]; misses: number; fetched: number }> {
  const path = join(dir, name);
  await writeFile(path, '');
  const s = await start(t, img, name, { [RECORD]: 'yes', [RECORD_PATH]: path });
  assert.ok(await eventually(() => exists(`${path}.ok`), (ok) => ok), `${path}.ok is created once the trace is written`);
  assert.ok(!(await exists(`${path}.lock`)), 'the lock file is removed');
  const records = decodeTrace(await readFile(path), path);
  assert.ok(records.length > 0, 'the trace has records');
  return { records, misses: s.detached.demandMissesAfterMount as number, fetched: s.fetched };
}

test('trace record and replay through containerd and the dadi snapshotter', async (t) => {
  if (!requireSystem(t, { commands: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'nbdfuse', 'mkfs.ext4'], root: true, paths: ['/dev/fuse', '/bin/busybox'] })) return;
  const img = await publishImages(t);
  const dir = await tempDir(t, 'dadi-trace-');

  const first = await recordTrace(t, img, dir, 'trace1');
  const second = await recordTrace(t, img, dir, 'trace2');
  const covered = blocks(first.records);
  const again = [...blocks(second.records)];
  const share = again.filter((b) => covered.has(b)).length / again.length;
  t.diagnostic(`trace: ${first.records.length} records, ${covered.size} blocks; second start: ${again.length} blocks, ${(100 * share).toFixed(1)}% covered by the first trace`);
  assert.ok(share >= 0.95, `only ${(100 * share).toFixed(1)}% of the second start's blocks are in the first trace`);

  // A cold start replaying the first trace (a non-empty record-trace-path replays, §7.8).
  const replayed = await start(t, img, 'replay1', { [RECORD]: 'yes', [RECORD_PATH]: join(dir, 'trace1') });
  const lines = await logLines(replayed.n);
  const summary = lines.find((l) => l.msg === 'trace replay summary at detach');
  assert.ok(summary, 'the replay reports at detach');
  const withTrace = replayed.detached.demandMissesAfterMount as number;
  const without = Math.min(first.misses, second.misses);
  const drop = 1 - withTrace / without;
  t.diagnostic(`demand misses (after the mount) without trace ${first.misses}/${second.misses}, with trace ${withTrace} (-${(100 * drop).toFixed(0)}%); ` +
    `replay ${JSON.stringify(summary)}; fetched ${first.fetched} B without, ${replayed.fetched} B with`);
  assert.ok(drop >= 0.8, `demand misses dropped only ${(100 * drop).toFixed(0)}% (${without} -> ${withTrace})`);
  assert.ok((summary.demandHitsPrefetched as number) > 0, 'demand reads hit prefetched data');
  assert.ok(replayed.fetched <= img.obdLayers.bytes, 'no more than the image was fetched');
  assert.equal(summary.running, false, 'the replay stopped at detach');

  // `dadi record-trace` on a fresh node: IMAGE + an acceleration layer (formats.md §7.8).
  const accel = img.obd.replace(/:obd$/, ':obd-accel');
  {
    img.proxy.reset();
    const daemon = await startSnapshotterDaemon(t);
    const ctd = await startContainerd(t, { proxyPlugins: { dadi: daemon.address } });
    const r = await runDadi(['record-trace', '--address', ctd.socket, '--namespace', ctd.namespace, '--insecure', '--timeout', '60', '--json', img.obd, accel, '--', ...START_CMD]);
    assert.equal(r.code, 0, `dadi record-trace failed: ${r.stderr}`);
    const res = JSON.parse(r.stdout.toString()) as { records: number; tracedBytes: number; manifestDigest: string; timedOut: boolean };
    assert.ok(res.records > 0 && !res.timedOut, r.stdout.toString());
    const client = new RegistryClient({ insecure: true });
    try {
      const repo = { registry: img.proxy.hostPort, repository: 'test/app' };
      const { manifest } = await client.manifests.resolve(repo, 'obd-accel');
      const layers = manifest.json.layers;
      assert.equal(layers.length, img.obdLayers.digests.length + 1, 'one layer more than IMAGE');
      const last = layers[layers.length - 1]!;
      assert.equal(last.mediaType, 'application/vnd.oci.image.layer.v1.tar');
      assert.deepEqual(last.annotations, {
        'containerd.io/snapshot/overlaybd/acceleration-layer': 'yes', 'containerd.io/snapshot/overlaybd/version': '0.1.0',
        'containerd.io/snapshot/overlaybd/blob-digest': last.digest, 'containerd.io/snapshot/overlaybd/blob-size': String(last.size),
        'containerd.io/snapshot/overlaybd/blob-fs-type': 'ext4',
      });
      const config = JSON.parse((await client.blobs.get(repo, manifest.json.config.digest)).toString()) as { rootfs: { diff_ids: string[] }; history: Array<{ created_by?: string }> };
      assert.equal(config.rootfs.diff_ids.at(-1), last.digest);
      assert.equal(config.history.at(-1)?.created_by, 'Acceleration Layer');
    } finally {
      await client.close();
    }
  }
  const fromAccel = await start(t, img, 'accel1', {}, accel);
  const accelSummary = (await logLines(fromAccel.n)).find((l) => l.msg === 'trace replay summary at detach');
  assert.ok(accelSummary, `an image with an acceleration layer replays its trace without any label; daemon log:\n${(await logLines(fromAccel.n)).filter((l) => /trace|detached|attached|accel/.test(JSON.stringify(l))).map((l) => JSON.stringify(l)).join('\n')}`);
  const accelMisses = fromAccel.detached.demandMissesAfterMount as number;
  const accelDrop = 1 - accelMisses / without;
  t.diagnostic(`acceleration layer: demand misses ${without} -> ${accelMisses} (-${(100 * accelDrop).toFixed(0)}%), replay ${JSON.stringify(accelSummary)}`);
  assert.ok(accelDrop >= 0.8, `with the acceleration layer demand misses dropped only ${(100 * accelDrop).toFixed(0)}% (${without} -> ${accelMisses})`);
  assert.equal(accelSummary.running, false, 'the replay stopped at detach');

  // No trace, a list of paths instead (§7.8): each file's extents, mapped to layer ranges, are prefetched.
  const list = join(dir, 'list');
  await writeFile(list, '/filler/base.bin\n/bin/\n/no/such/file\n');
  const listed = await start(t, img, 'list1', { [RECORD]: 'yes', [RECORD_PATH]: list });
  const listLines = await logLines(listed.n);
  const resolved = listLines.find((l) => l.msg === 'prefetch list resolved');
  const listSummary = listLines.find((l) => l.msg === 'trace replay summary at detach');
  t.diagnostic(`file list: ${JSON.stringify(resolved)}; replay ${JSON.stringify(listSummary)}; demand misses after the mount ${listed.detached.demandMissesAfterMount}`);
  assert.ok(resolved && (resolved.files as number) >= 2, 'the list resolves to the listed file and the files under /bin');
  assert.deepEqual(listLines.find((l) => l.msg === 'prefetch list: paths not in the image, skipped')?.missing, ['/no/such/file']);
  assert.ok(listSummary && (listSummary.prefetchBytes as number) >= 26 << 20, 'the whole of /filler/base.bin (26 MiB) is prefetched');
  assert.ok((listSummary.demandHitsPrefetched as number) > 0, 'demand reads hit the prefetched files');
});

test('dadi record-trace --timeout stops a command that does not exit and pushes what it read so far', { timeout: 300_000 }, async (t) => {
  if (!requireSystem(t, { commands: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'nbdfuse', 'mkfs.ext4'], root: true, paths: ['/dev/fuse', '/bin/busybox'] })) return;
  const img = await publishImages(t);
  const daemon = await startSnapshotterDaemon(t);
  const ctd = await startContainerd(t, { proxyPlugins: { dadi: daemon.address } });
  const accel = img.obd.replace(/:obd$/, ':obd-timeout');
  const started = performance.now();
  const r = await runDadi(['record-trace', '--address', ctd.socket, '--namespace', ctd.namespace, '--insecure', '--timeout', '8', '--json', img.obd, accel,
    '--', '/bin/sh', '-c', 'cat /bottom.txt >/dev/null; /bin/busybox head -c 2000000 /filler/base.bin >/dev/null; exec /bin/sleep 600']);
  assert.equal(r.code, 0, `dadi record-trace failed: ${r.stderr}`);
  const res = JSON.parse(r.stdout.toString()) as { records: number; tracedBytes: number; timedOut: boolean };
  assert.ok(res.timedOut, 'the timeout ended the run');
  assert.ok(res.tracedBytes >= 2_000_000, `the trace holds what was read before the timeout (${res.tracedBytes} bytes)`);
  assert.ok(performance.now() - started < 120_000, 'the command did not wait for the container');
  assert.equal((await ctd.ctr(['containers', 'ls', '-q'])).trim(), '', 'the container is gone');
});
