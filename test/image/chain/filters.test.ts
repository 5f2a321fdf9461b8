/**
 * Inserting a stage into every layer chain of a remote image is a filter plus one line of
 * configuration: a read counter (src/io/read-counter.ts, a pass-through ByteSource that only
 * counts) goes below the cache in one image and above the decoders in another, by the `filters`
 * option alone. Below the cache it sees exactly what the registry served for the layers; above
 * the decoders, every read the disk makes of a layer. The image reads the same either way.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { openRemoteImage, type RemoteImage } from '../../../src/image/remote.ts';
import { ReadCounter, type ReadCounts } from '../../../src/io/read-counter.ts';
import { tempDir, vector } from '../../helpers/env.ts';
import { startEmbeddedRegistry } from '../../helpers/registry.ts';
import { buildObdImage, pushObdImage } from '../remote/fixture.ts';

async function digestOfFirst(img: RemoteImage, bytes: number): Promise<string> {
  const buf = new Uint8Array(bytes);
  await img.disk.read(buf, 0);
  return createHash('sha256').update(buf).digest('hex');
}

test('a read counter is added to the remote chain by one line of configuration, below the cache or above the decoders', async (t) => {
  const reg = await startEmbeddedRegistry(t);
  await pushObdImage(reg.hostPort, 'chain/counted', 'v1', await buildObdImage([vector('A.zstd.bs4.zlsmt'), vector('B.lsmt')]));
  const ref = `${reg.hostPort}/chain/counted:v1`;
  const dir = await tempDir(t);
  const base = { background: { enable: false }, logStatsOnClose: false, statsIntervalMs: 0 } as const;

  const fetched: ReadCounts = { reads: 0, bytes: 0 };
  const below = await openRemoteImage(ref, { ...base, cacheDir: join(dir, 'c1'),
    filters: { upstream: [(next) => new ReadCounter(next, fetched)] } });
  t.after(() => below.close());
  const plain = await openRemoteImage(ref, { ...base, cacheDir: join(dir, 'c2') });
  t.after(() => plain.close());
  const decoded: ReadCounts = { reads: 0, bytes: 0 };
  const above = await openRemoteImage(ref, { ...base, cacheDir: join(dir, 'c3'),
    filters: { layer: [(next) => new ReadCounter(next, decoded)] } });
  t.after(() => above.close());

  const want = await digestOfFirst(plain, 8 << 20);
  assert.equal(await digestOfFirst(below, 8 << 20), want, 'the counter below the cache changes no byte');
  assert.equal(await digestOfFirst(above, 8 << 20), want, 'the counter above the decoders changes no byte');

  const layerFetches = below.stats().layers.reduce((s, l) => ({ reads: s.reads + l.fetched.requests, bytes: s.bytes + l.fetched.bytes }), { reads: 0, bytes: 0 });
  assert.deepEqual(fetched, layerFetches, 'below the cache it counts exactly the registry fetches of the layers');
  assert.ok(decoded.reads > 0 && decoded.bytes > 0, 'above the decoders it sees the layer reads of attach and of the disk');
  const before = decoded.reads;
  const top = above.layers[1]!.index;
  const extent = top.offset[top.count - 1]! * 512; // the top layer's last extent, past the 8 MiB read above
  await above.disk.read(new Uint8Array(4096), extent);
  await above.disk.read(new Uint8Array(4096), extent);
  assert.ok(decoded.reads > before, 'every disk read of layer data passes it, cached or not');
});
