/**
 * `dadi convert oci:SRC oci:DST` end to end: an image using every tar feature (gzip, zstd and
 * plain layers) is converted (by the userspace ext4 writer, and with --kernel through real
 * mounts), the converted blobs are mounted with
 * `dadi mount` and the whole tree must equal GNU tar's extraction of the source; the blobs must
 * pass the format checks; converting again converts nothing; hostile layers fail naming the
 * entry and leave nothing mounted or running.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { OciLayout } from '../../../src/image/oci-layout.ts';
import { MediaType } from '../../../src/registry/media-types.ts';
import { requireSystem } from '../../helpers/env.ts';
import { writeOciImage } from './image-build.ts';
import { baseLayer, CAPS, hostileImages, LONG_FILE, middleLayer, topLayer } from './layers.ts';
import {
  assertConformant, assertNothingRunning, assertSameTree, convert, convertNeeds, convertScratch, mountedTree, outcomes,
  readConverted, referenceTree, summaryOf,
} from './support.ts';

for (const kernel of [false, true]) {
test(`every tar feature survives conversion${kernel ? ' (--kernel: applied through a mount)' : ''}: the mounted image equals the reference extraction; blobs conform; a second run reuses all`, async (t) => {
  if (!requireSystem(t, convertNeeds)) return;
  const flags = kernel ? ['--kernel'] : [];
  const s = await convertScratch(t);
  const tars = [await baseLayer(), middleLayer(), await topLayer()];
  const src = join(s.dir, 'src');
  const built = await writeOciImage(src, 'v1', tars, ['gzip', 'zstd', 'none']);
  const dst = join(s.dir, 'dst');

  const first = await convert(s, `oci:${src}:v1`, `oci:${dst}:obd`, flags);
  const sum = summaryOf(first);
  assert.deepEqual(outcomes(first), ['converted', 'converted', 'converted']);
  assert.equal(sum.layers, 3);
  assert.equal(sum.reusedLayers, 0);
  assert.equal(sum.bytesIn, built.layerSizes.reduce((a, b) => a + b, 0));
  assert.ok(sum.seconds > 0);
  // One JSON line per step, in order, for every layer.
  for (let i = 0; i < 3; i++) {
    const steps = kernel ? ['mount', 'apply', 'unmount', 'commit', 'push', 'layer-done'] : ['apply', 'commit', 'push', 'layer-done'];
    assert.deepEqual(first.events.filter((e) => e.layer === i).map((e) => e.step), steps);
  }
  assert.deepEqual([first.events[0]!.step, first.events.at(-2)!.step], ['resolve', 'manifest']);
  await assertNothingRunning(s.dir);

  const img = await readConverted(dst, 'obd');
  assert.equal(img.manifest.mediaType, MediaType.ociManifest);
  assert.deepEqual(img.manifest.layers.map((l) => l.mediaType), [MediaType.ociLayer, MediaType.ociLayer, MediaType.ociLayer]);
  assert.equal(sum.bytesOut, img.manifest.layers.reduce((n, l) => n + l.size, 0));
  assert.deepEqual(sum.layerDigests, img.manifest.layers.map((l) => l.digest));
  await assertConformant(s, img, built.diffIds, { vsize: 64 * 2 ** 30, algo: 'lz4' });
  // The rest of the config is the source's.
  assert.deepEqual(img.config.config, built.config.config);
  assert.deepEqual(img.config.history, built.config.history);

  const mine = await mountedTree(s, img.layerFiles, 'features');
  const ref = await referenceTree(s, tars, 'features');
  assertSameTree(mine, ref);
  // Direct checks, so a mistake shared with GNU tar cannot hide.
  const n = (p: string) => mine.get(p)!;
  assert.equal(n('/etc/secret'), undefined);
  assert.deepEqual([...mine.keys()].filter((p) => p.startsWith('/old/')), ['/old/new']);
  assert.equal(mine.has('/gone'), false);
  assert.equal(n('/usr/bin/su').mode, 0o4750);
  assert.equal(n('/usr/bin/wall').mode, 0o2755);
  assert.equal(n('/tmp').mode, 0o1777);
  assert.deepEqual([n('/data/attrs').uid, n('/data/attrs').gid], [33, 33]);
  assert.equal(n('/data/empty').target, 'attrs');
  assert.equal(n('/usr/bin/ping').xattrs['security.capability'], CAPS.toString('hex'));
  assert.equal(n('/data/attrs').xattrs['user.origin'], Buffer.from('layer0').toString('hex'));
  assert.equal(n('/app/tool-link').linkGroup, '/app/tool-link');
  assert.equal(n('/usr/share/tool-again').linkGroup, '/app/tool-link');
  assert.deepEqual([n('/dev/sda').type, n('/dev/sda').rdevMajor, n('/dev/sda').rdevMinor], ['block', 8, 0]);
  assert.deepEqual([n('/dev/null').type, n('/dev/null').rdevMajor, n('/dev/null').rdevMinor], ['char', 1, 3]);
  assert.equal(n('/dev/initctl').type, 'fifo');
  assert.equal(n('/etc/absolute').size, 'inside the root\n'.length);
  assert.ok(n(`/${LONG_FILE}`));
  assert.equal(n('/etc').mtimeNs, String(1_700_000_004n * 10n ** 9n));
  assert.equal(n('/usr/lib').mtimeNs, String(1_600_000_004n * 10n ** 9n));

  // Same image, same settings, same destination: nothing converted, same manifest.
  const again = await convert(s, `oci:${src}:v1`, `oci:${dst}:obd`, flags);
  const sum2 = summaryOf(again);
  assert.deepEqual(outcomes(again), ['reused', 'reused', 'reused']);
  assert.equal(again.events.filter((e) => e.step === 'mount').length, 0);
  assert.deepEqual([sum2.reusedLayers, sum2.bytesIn, sum2.manifestDigest], [3, 0, sum.manifestDigest]);
  await assertNothingRunning(s.dir);
});
}

test('hostile layers fail conversion naming the layer and entry, write nothing outside, and leave nothing mounted or running', async (t) => {
  if (!requireSystem(t, convertNeeds)) return;
  const s = await convertScratch(t);
  for (const h of await hostileImages()) {
    const src = join(s.dir, `src-${h.name}`);
    const built = await writeOciImage(src, 'v1', h.tars, 'gzip');
    const dst = join(s.dir, `dst-${h.name}`);
    const run = await convert(s, `oci:${src}:v1`, `oci:${dst}:obd`);
    assert.equal(run.result.code, 1, `${h.name}: conversion must fail`);
    const msg = run.result.stderr.trim();
    assert.ok(msg.startsWith(`dadi: layer ${h.failingLayer} (${built.layerDigests[h.failingLayer]}): layer entry ${JSON.stringify(h.entry)}: `), `${h.name}: ${msg}`);
    assert.match(msg, h.why);
    assert.doesNotMatch(msg, /cleaning up also failed/);
    assert.equal(msg.split('\n').length, 1, `${h.name}: one line, no stack trace: ${msg}`);
    assert.ok(!run.events.some((e) => e.step === 'manifest'), `${h.name}: no manifest pushed`);
    assert.equal(existsSync('/tmp/dadi-escape'), false);
    assert.equal(existsSync(join(s.dir, 'dadi-escape')), false);
    await assertNothingRunning(s.dir);
  }
});

test('docker schema2 source, --compress zstd --block-size 64K --vsize 1G: conformant blobs, same tree; other settings are not reused', async (t) => {
  if (!requireSystem(t, convertNeeds)) return;
  const s = await convertScratch(t);
  const tars = [await baseLayer()];
  const src = join(s.dir, 'src');
  const built = await writeOciImage(src, 'v1', tars, 'gzip', { docker: true });
  const dst = join(s.dir, 'dst');
  const opts = ['--compress', 'zstd', '--block-size', '64K', '--vsize', '1G'];
  const zstd = await convert(s, `oci:${src}:v1`, `oci:${dst}:zstd`, opts);
  summaryOf(zstd);
  const img = await readConverted(dst, 'zstd');
  await assertConformant(s, img, built.diffIds, { vsize: 2 ** 30, algo: 'zstd', blockSize: 65536 });
  // The manifest keeps the source's schema family; layers are uncompressed tars (formats.md §7.9).
  assert.equal(img.manifest.mediaType, MediaType.dockerManifest);
  assert.equal(img.manifest.config.mediaType, MediaType.dockerConfig);
  assert.deepEqual(img.manifest.layers.map((l) => l.mediaType), [MediaType.dockerLayer]);
  assertSameTree(await mountedTree(s, img.layerFiles, 'zstd'), await referenceTree(s, tars, 'zstd'));
  assert.deepEqual(outcomes(await convert(s, `oci:${src}:v1`, `oci:${dst}:zstd-again`, opts)), ['reused']);
  // The record is keyed by the settings too: lz4 is a different conversion.
  const lz4 = await convert(s, `oci:${src}:v1`, `oci:${dst}:lz4`, ['--vsize', '1G']);
  assert.deepEqual(outcomes(lz4), ['converted']);
  assert.notEqual(summaryOf(lz4).layerDigests[0], img.manifest.layers[0]!.digest);
  await assertNothingRunning(s.dir);
});

test('--compress none: plain (uncompressed) overlaybd layers with digest tables; the same tree; reproducible', async (t) => {
  if (!requireSystem(t, convertNeeds)) return;
  const s = await convertScratch(t);
  const tars = [await baseLayer(), middleLayer()];
  const src = join(s.dir, 'src');
  const built = await writeOciImage(src, 'v1', tars, 'gzip');
  const dst = join(s.dir, 'dst');
  const plain = summaryOf(await convert(s, `oci:${src}:v1`, `oci:${dst}:plain`, ['--compress', 'none', '--vsize', '1G']));
  const img = await readConverted(dst, 'plain');
  await assertConformant(s, img, built.diffIds, { vsize: 2 ** 30, algo: 'none' });
  assertSameTree(await mountedTree(s, img.layerFiles, 'plain'), await referenceTree(s, tars, 'plain'));
  // Another scratch cache: converted again from scratch, the same bytes.
  const again = summaryOf(await convert({ ...s, cacheDir: join(s.dir, 'cache2') }, `oci:${src}:v1`, `oci:${dst}:plain2`, ['--compress', 'none', '--vsize', '1G']));
  assert.deepEqual(again.layerDigests, plain.layerDigests);
  await assertNothingRunning(s.dir);
});

test('a truncated gzip layer and a blob that does not match its digest fail naming layer, blob and problem, leaving nothing behind', async (t) => {
  if (!requireSystem(t, convertNeeds)) return;
  const s = await convertScratch(t);
  const full = gzipSync(await baseLayer());
  const cases: Array<{ name: string; build(dir: string): Promise<string>; why: (digest: string) => RegExp }> = [
    {
      name: 'truncated',
      // Stored as an uncompressed layer so the digest matches the cut bytes; detection sees gzip.
      build: async (dir) => (await writeOciImage(dir, 'v1', [full.subarray(0, full.length >> 1)], 'none')).layerDigests[0]!,
      why: (d) => new RegExp(`^dadi: layer 0 \\(${d}\\): ${d}: at offset \\d+: .*(truncated|corrupt|unexpected end)`, 'i'),
    },
    {
      name: 'corrupt',
      build: async (dir) => {
        const d = (await writeOciImage(dir, 'v1', [await baseLayer()], 'gzip')).layerDigests[0]!;
        const file = new OciLayout(dir).blobPath(d);
        const bytes = await readFile(file);
        bytes[bytes.length - 100] ^= 0xff;
        await writeFile(file, bytes);
        return d;
      },
      why: (d) => new RegExp(`^dadi: layer 0 \\(${d}\\): .*${d.slice(7)}: .*(digest|CRC|corrupt|check)`, 'i'),
    },
  ];
  for (const c of cases) {
    const src = join(s.dir, `src-${c.name}`);
    const digest = await c.build(src);
    const run = await convert(s, `oci:${src}:v1`, `oci:${join(s.dir, `dst-${c.name}`)}:obd`);
    assert.equal(run.result.code, 1, `${c.name}: conversion must fail`);
    assert.match(run.result.stderr.trim(), c.why(digest), c.name);
    assert.equal(run.result.stderr.trim().split('\n').length, 1, run.result.stderr);
    await assertNothingRunning(s.dir);
  }
});
