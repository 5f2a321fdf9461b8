/**
 * Reproducible conversion meets the registry, without any privilege: converting the same image
 * into an OCI layout and, from another clean cache, into the embedded registry gives the same
 * manifest digest; a third conversion from yet another clean cache (another machine) finds every
 * blob already there by digest and uploads nothing; and the registry image, attached lazily, lists
 * and reads exactly like the local copy through `dadi ls` and `dadi cat-file`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDadi } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { writeOciImage } from './image-build.ts';
import { baseLayer, middleLayer, topLayer } from './layers.ts';
import { convert, convertScratch, summaryOf } from './support.ts';

test('the same manifest digest in a layout and a registry; a clean third run uploads nothing; the lazily attached registry image reads like the local one', { timeout: 300_000 }, async (t) => {
  const s = await convertScratch(t);
  const registry = await startEmbeddedRegistry(t);
  const src = join(s.dir, 'src');
  await writeOciImage(src, 'v1', [await baseLayer(), middleLayer(), await topLayer()], 'gzip');
  const local = `oci:${join(s.dir, 'out')}:obd`;
  const remote = `${registry.hostPort}/test/app:obd`;

  const a = summaryOf(await convert(s, `oci:${src}:v1`, local, ['--cache-dir', join(s.dir, 'cache-a')]));
  const b = summaryOf(await convert(s, `oci:${src}:v1`, remote, ['--cache-dir', join(s.dir, 'cache-b')]));
  assert.equal(b.manifestDigest, a.manifestDigest);
  const third = await convert(s, `oci:${src}:v1`, `${registry.hostPort}/test/app:again`, ['--cache-dir', join(s.dir, 'cache-c')]);
  assert.equal(summaryOf(third).manifestDigest, a.manifestDigest);
  assert.deepEqual(third.events.filter((e) => e.step === 'layer-done').map((e) => e.pushed), ['existing', 'existing', 'existing']);

  const cacheDir = join(s.dir, 'block-cache');
  const listing = async (image: string) => {
    const r = await runDadi(['ls', '-R', '--json', '--cache-dir', cacheDir, image, '/']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.toString();
  };
  const mine = await listing(local);
  assert.ok(mine.split('\n').length > 20);
  assert.equal(await listing(remote), mine);
  for (const path of ['/usr/bin/su', '/data/attrs', '/etc/absolute']) {
    const [l, r] = await Promise.all([local, remote].map((img) => runDadi(['cat-file', '--cache-dir', cacheDir, img, path])));
    assert.equal(l!.code, 0, l!.stderr);
    assert.equal(r!.code, 0, r!.stderr);
    assert.ok(r!.stdout.equals(l!.stdout), path);
  }
  const ext = await runDadi(['cat-file', '--extents', '--cache-dir', cacheDir, remote, '/etc/absolute']);
  assert.match(ext.stdout.toString(), /^\d+ 16\n$/);
  const missing = await runDadi(['cat-file', '--cache-dir', cacheDir, remote, '/no/such/file']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /\/no\/such\/file: .*no such file or directory/);
});
