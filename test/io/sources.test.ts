/**
 * The shared source suite (source-suite.ts) run against every ByteSource implementation and
 * every source filter of the data path: local files (adaptive and thread-pool only), memory,
 * slices, the pass-through and renaming filters, ZFile and tar-wrapped ZFile payloads, the
 * writable layer's growing data file, registry blobs by Range, the block cache's handle,
 * read-ahead over it, and a whole remote layer chain (registry → cache → read-ahead → ZFile →
 * guard) as the layer stack reads it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';
import { openTarPayload } from '../../src/format/tar/reader.ts';
import { createWritableLayer, openWritableLayer } from '../../src/format/lsmt/writable.ts';
import { ZFileReader } from '../../src/format/zfile/reader.ts';
import { layerChainConfig } from '../../src/image/chain/config.ts';
import { openLayerChain } from '../../src/image/chain/layer.ts';
import { registryUpstream } from '../../src/image/chain/upstreams.ts';
import { BlobCache, ReadAheadSource } from '../../src/io/cache.ts';
import { FileSource } from '../../src/io/file.ts';
import { NamedSource, SourceFilter } from '../../src/io/filter.ts';
import { MemorySource } from '../../src/io/memory.ts';
import { SliceSource } from '../../src/io/slice.ts';
import { HttpRangeSource } from '../../src/registry/blob-source.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { sha256Digest } from '../../src/registry/digest.ts';
import { tempDir, vector } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { HttpTestSource } from './cache/http-source.ts';
import { RangeServer } from './cache/range-server.ts';
import { sourceSuite } from './source-suite.ts';

const bytes = randomBytes(300_001);
const scratch = await mkdtemp(join(tmpdir(), 'dadi-sources-'));
after(() => rm(scratch, { recursive: true, force: true }));
const file = join(scratch, 'blob');
await writeFile(file, bytes);

sourceSuite({ name: 'FileSource', expected: bytes, open: () => FileSource.open(file) });
sourceSuite({ name: 'FileSource (thread pool only)', expected: bytes, open: () => FileSource.open(file, { asyncOnly: true }) });
sourceSuite({ name: 'MemorySource', expected: bytes, open: async () => new MemorySource(bytes) });
sourceSuite({ name: 'SliceSource over a file', expected: bytes.subarray(1000, 250_000), open: async () => new SliceSource(await FileSource.open(file), 1000, 249_000) });
sourceSuite({ name: 'SourceFilter (pass-through)', expected: bytes, open: async () => new SourceFilter(await FileSource.open(file)) });
sourceSuite({ name: 'NamedSource', expected: bytes, open: async () => new NamedSource(new MemorySource(bytes), 'stdin') });

const raw = readFileSync(vector('input.raw'));
sourceSuite({ name: 'ZFileReader (zstd, 4K)', expected: raw, open: async () => ZFileReader.open(await FileSource.open(vector('input.zstd.bs4.zfile'))) });
sourceSuite({
  name: 'ZFileReader over a tar payload (lz4, 4K)', expected: raw,
  open: async () => ZFileReader.open(await openTarPayload(await FileSource.open(vector('input.lz4.bs4.tar.zfile')))),
});

const rwData = join(scratch, 'rw.data');
const rwIndex = join(scratch, 'rw.index');
{
  const layer = await createWritableLayer(rwData, rwIndex, { virtualSize: 1 << 30 });
  for (let i = 0; i < 40; i++) await layer.write(bytes.subarray(i * 4096, i * 4096 + 4096 + (i % 3) * 512), (i * 7919 % 1000) * 4096);
  await layer.close();
}
sourceSuite({
  name: 'writable layer data file', expected: readFileSync(rwData), runs: 30,
  async open(t: TestContext) {
    const layer = await openWritableLayer(rwData, rwIndex);
    t.after(() => layer.close());
    return layer.data;
  },
});

/** The blob served over HTTP, opened through a fresh cache (64 KiB refill units). */
async function cachedHandle(t: TestContext, body: Uint8Array, digest: string) {
  const server = await RangeServer.start(Buffer.from(body));
  t.after(() => server.stop());
  const cache = await BlobCache.open({ dir: await tempDir(t, 'dadi-cache-'), capacityBytes: 1 << 30, refillUnit: 64 * 1024, metricsRegistry: null });
  t.after(() => cache.close());
  return cache.open(digest, body.length, new HttpTestSource(server.url, body.length));
}

const digest = sha256Digest(bytes);
sourceSuite({
  name: 'CacheHandle (block cache over HTTP)', expected: bytes, runs: 30,
  open: (t) => cachedHandle(t, bytes, digest),
});
sourceSuite({
  name: 'ReadAheadSource over the cache', expected: bytes, runs: 30,
  open: async (t) => new ReadAheadSource(await cachedHandle(t, bytes, digest), 4 * 64 * 1024),
});

async function pushed(t: TestContext, blob: Uint8Array): Promise<{ client: RegistryClient; repo: { registry: string; repository: string }; digest: string }> {
  const reg = await startEmbeddedRegistry(t);
  const client = new RegistryClient({ insecure: true });
  t.after(() => client.close());
  const repo = { registry: reg.hostPort, repository: 'suite/blob' };
  const { digest: d } = await client.blobs.upload(repo, blob);
  return { client, repo, digest: d };
}

sourceSuite({
  name: 'HttpRangeSource (registry blob by Range)', expected: bytes, runs: 30,
  async open(t) {
    const { client, repo, digest: d } = await pushed(t, bytes);
    return new HttpRangeSource(client, repo, d, bytes.length);
  },
});
// Wrappers keep the HTTP source's progressive reads (a verifier above hashes as bytes arrive).
sourceSuite({
  name: 'SourceFilter over HttpRangeSource', expected: bytes, runs: 10,
  async open(t) {
    const { client, repo, digest: d } = await pushed(t, bytes);
    return new SourceFilter(new HttpRangeSource(client, repo, d, bytes.length));
  },
});
sourceSuite({
  name: 'SliceSource over HttpRangeSource', expected: bytes.subarray(5000, 250_000), runs: 10,
  async open(t) {
    const { client, repo, digest: d } = await pushed(t, bytes);
    return new SliceSource(new HttpRangeSource(client, repo, d, bytes.length), 5000, 245_000);
  },
});

const layerFile = readFileSync(vector('A.zstd.bs4.zlsmt'));
sourceSuite({
  name: 'remote layer chain (registry → cache → read-ahead → ZFile → guard)', expected: readFileSync(vector('A.lsmt')), runs: 30,
  async open(t) {
    const { client, repo, digest: d } = await pushed(t, layerFile);
    const cache = await BlobCache.open({ dir: await tempDir(t, 'dadi-cache-'), capacityBytes: 1 << 30, metricsRegistry: null });
    t.after(() => cache.close());
    const blob = { digest: d, size: layerFile.length };
    const layer = await openLayerChain({ name: 'A', blob, upstream: registryUpstream(client, repo, blob) }, layerChainConfig({ cache }));
    return layer.data;
  },
});
