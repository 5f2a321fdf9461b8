/**
 * Observing the snapshotter and prefetching without a trace, against a real daemon (driven over
 * gRPC, rootfs mounted here) and a real docker-registry behind a byte-counting proxy and a
 * throttling proxy:
 * - with --metrics-address, /status shows the attached image (layers, cache, verify counters,
 *   the trace replay's figures) and `dadi image info --daemon` prints them; /metrics serves the
 *   prefetch, registry-client, cache and process metrics, and the prefetch totals outlive Remove;
 * - whole-layer prefetch is off by default and for the label `none`; `top-first` from the config
 *   fetches every layer whole, the top one first, each byte once, and a demand read issued
 *   meanwhile does not queue behind it;
 * - a label-listed prefetch (`bottom,top`) fetches only those layers, in that order, and stops on
 *   Remove: the requests in flight finish, none follow.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isCode, type SnapshotsClient } from '../../../src/daemon/containerd/client.ts';
import { parseHttpAddress } from '../../../src/daemon/http-address.ts';
import type { DaemonStatus, ImageStatus } from '../../../src/daemon/snapshotter/status.ts';
import { chainIds } from '../../../src/image/chain-id.ts';
import { RegistryClient } from '../../../src/registry/client.ts';
import { requireSystem, runDadi, tempDir } from '../../helpers/env.ts';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.ts';
import { freePort } from '../../helpers/registry.ts';
import { leftovers, startSnapshotterDaemon, type SnapshotterDaemon } from '../../helpers/snapshotter.ts';
import { mountAll, unmount } from './conformance.ts';
import { publishImages, type PublishedImages } from './images.ts';

const RECORD = 'containerd.io/snapshot/overlaybd/record-trace';
const RECORD_PATH = 'containerd.io/snapshot/overlaybd/record-trace-path';
const PREFETCH_LAYERS = 'containerd.io/snapshot/dadi/prefetch-layers';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

async function httpGet(address: string, path: string): Promise<{ status: number; type: string; body: string }> {
  const a = parseHttpAddress(address);
  return new Promise((resolve, reject) => {
    const req = request({ ...('unix' in a ? { socketPath: a.unix } : { host: a.host, port: a.port }), path, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function status(address: string): Promise<DaemonStatus> {
  const r = await httpGet(address, '/status');
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as DaemonStatus;
}

/** The value of the sample `name{labels}` in Prometheus text (labels matched as given, in order). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{\s]+(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m && want.every((w) => (m[1] ?? '').split(',').includes(w))) return Number(m[2]);
  }
  return undefined;
}

interface Layer { digest: string; size: number; annotations: Record<string, string> }

/** The image's layer descriptors (bottom first). */
async function layersOf(img: PublishedImages): Promise<Layer[]> {
  const client = new RegistryClient();
  try {
    const { manifest } = await client.manifests.resolve({ registry: img.proxy.hostPort, repository: 'test/app' }, 'obd');
    return manifest.json.layers.map((l) => ({ digest: l.digest, size: l.size, annotations: { ...(l.annotations ?? {}) } }));
  } finally {
    await client.close();
  }
}

/** The lazy pull of `ref` as containerd does it (every layer answered AlreadyExists); the top chain ID. */
async function pull(sn: SnapshotsClient, layers: readonly Layer[], ref: string): Promise<string> {
  const chain = chainIds(layers.map((d) => d.digest));
  for (const [i, d] of layers.entries()) {
    await assert.rejects(sn.prepare(`extract-${i} ${chain[i]}`, i === 0 ? '' : chain[i - 1]!,
      { 'containerd.io/snapshot.ref': chain[i]!, 'containerd.io/snapshot/cri.image-ref': ref, ...d.annotations }),
    (err: unknown) => isCode(err, grpc.status.ALREADY_EXISTS));
  }
  return chain[chain.length - 1]!;
}

/** A container start's reads: small files, 20 scattered 64 KiB pieces of the bottom layer's filler, 1 MB of the top one's. */
async function startReads(root: string): Promise<void> {
  await readFile(join(root, 'bottom.txt'));
  await readFile(join(root, 'etc/top.txt'));
  const fh = await open(join(root, 'filler/base.bin'), 'r');
  const buf = Buffer.alloc(65536);
  for (let i = 0; i < 20; i++) await fh.read(buf, 0, buf.length, i * 19 * 65536);
  await fh.close();
  const top = await open(join(root, 'filler/top.bin'), 'r');
  await top.read(Buffer.alloc(1_000_000), 0, 1_000_000, 0);
  await top.close();
}

/** A container rootfs: Prepare, mounted on a fresh directory; `done` unmounts and removes it. */
async function container(t: TestContext, d: SnapshotterDaemon, key: string, parent: string, labels: Record<string, string> = {}): Promise<{ root: string; done: () => Promise<void> }> {
  // Not tempDir: the directory must be unmounted before it is deleted.
  const dir = await mkdtemp(join(tmpdir(), 'dobs-'));
  const root = join(dir, 'rootfs');
  await mkdir(root);
  let removed = false;
  const done = async (): Promise<void> => {
    if (removed) return;
    removed = true;
    await unmount(root);
    await d.client.remove(key);
  };
  t.after(async () => {
    await done().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  await mountAll(await d.client.prepare(key, parent, labels), root);
  return { root, done };
}

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 2000)}`);
    await sleep(50);
  }
}

/**
 * A status socket path; its directory is removed by a hook registered once the daemon has started,
 * so it runs after the daemon helper's own (which restarts the daemon once, recreating the directory).
 */
async function socketPath(t: TestContext): Promise<{ path: string; cleanupAfter: () => void }> {
  const dir = await mkdtemp(join(tmpdir(), 'dobs-sock-'));
  let registered = false;
  const cleanupAfter = (): void => {
    registered = true;
    t.after(() => rm(dir, { recursive: true, force: true }));
  };
  // Should the daemon fail to start, the directory still goes.
  t.after(() => (registered ? undefined : rm(dir, { recursive: true, force: true })));
  return { path: join(dir, 'status.sock'), cleanupAfter };
}

const blobRequests = (fp: FaultProxy): number => fp.log.filter((e) => e.method === 'GET' && /\/blobs\/sha256:/.test(e.url)).length;

/** Slows every blob read by `ms` (a far registry). */
function throttle(fp: FaultProxy, ms: number): void {
  fp.clear();
  fp.inject({ kind: 'delay', ms }, { match: (req) => req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? ''), times: 1_000_000 });
}

const NEEDS = { commands: ['nbdfuse', 'losetup', 'mount', 'mkfs.ext4', 'docker-registry', 'skopeo'], root: true, paths: ['/dev/fuse'] };

test('snapshotter observability and whole-layer prefetch', { timeout: 900_000 }, async (t) => {
  if (!requireSystem(t, NEEDS)) return;
  const img = await publishImages(t);
  const layers = await layersOf(img);
  assert.equal(layers.length, 3);
  const imageBytes = layers.reduce((s, l) => s + l.size, 0);
  // A throttling proxy in front of the counting one: references through it reach the same registry.
  const fp = await startFaultProxy(t, `http://${img.proxy.hostPort}`);
  const ref = `${fp.hostPort}/test/app:obd`;

  await t.test('/status and dadi image info --daemon show the trace replay of an attached image; /metrics serves prefetch, registry, cache and process metrics', async (t) => {
    const dir = await tempDir(t, 'dobs-trace-');
    const trace = join(dir, 'trace');
    await writeFile(trace, '');
    {
      // Record a trace of the start on one node...
      const d = await startSnapshotterDaemon(t);
      const top = await pull(d.client, layers, ref);
      const c = await container(t, d, 'record', top, { [RECORD]: 'yes', [RECORD_PATH]: trace });
      await startReads(c.root);
      await c.done();
      await until(() => exists(`${trace}.ok`), (ok) => ok, 'the trace to be written');
      await d.kill();
    }
    // ...and replay it on a fresh one that serves its status over TCP.
    const address = `127.0.0.1:${await freePort()}`;
    const d = await startSnapshotterDaemon(t, { args: ['--metrics-address', address] });
    const idle = await status(address);
    assert.equal(idle.pid, d.pid());
    assert.deepEqual(idle.images, [], 'nothing attached yet');
    const top = await pull(d.client, layers, ref);
    const c = await container(t, d, 'replay', top, { [RECORD]: 'yes', [RECORD_PATH]: trace });
    const done = await until(() => status(address), (s) => s.images[0]?.prefetch?.running === false, 'the replay to finish');
    await startReads(c.root);
    // The kernel's read-ahead may still be reading: compare figures once they hold still.
    let s = await status(address);
    for (let prev = ''; JSON.stringify(s.images[0]?.prefetch) !== prev;) {
      prev = JSON.stringify(s.images[0]?.prefetch);
      await sleep(1000);
      s = await status(address);
    }
    assert.equal(s.images.length, 1);
    const im = s.images[0]!;
    assert.equal(im.image, ref);
    assert.equal(im.state, 'attached');
    assert.deepEqual(im.containers, ['replay']);
    assert.match(im.device ?? '', /^\/dev\/(loop|nbd)\d+$/);
    assert.deepEqual(im.layers.map((l) => l.digest), layers.map((l) => l.digest), 'layers bottom first, by blob');
    for (const l of im.layers) {
      assert.ok(l.cache && l.cache.presentBytes > 0 && l.cache.presentBytes <= (l.blobSize ?? 0), `layer ${l.digest} shows its cache`);
      // Only presence: the counters stay 0 when the blob's cached source was opened by another chain (the pull's early index fetch).
      assert.ok(l.verify && l.verify.failures === 0 && l.verify.mismatches === 0, `layer ${l.digest} shows its verify counters (dadi convert writes digest tables): ${JSON.stringify(l)}`);
    }
    const p = im.prefetch!;
    assert.equal(p.kind, 'trace');
    assert.equal(p.source, trace);
    assert.ok(p.issuedBytes > 0 && p.issuedBytes === p.prefetchBytes, 'every traced byte was requested');
    assert.ok(p.wallMs > 0 && p.wallMs === done.images[0]!.prefetch!.wallMs, 'the wall time stops with the replay');
    assert.ok(p.demandReads > 0 && p.demandHitsPrefetched > 0, `demand reads hit prefetched data: ${JSON.stringify(p)}`);
    assert.ok(p.cacheMisses <= 2, `the start's reads were prefetched, so hardly any missed: ${p.cacheMisses}`);
    assert.equal(s.registry.bytes, im.fetched!.bytes, 'one image: the daemon fetched only its blobs');
    t.diagnostic(`replay: ${JSON.stringify(p)}`);

    // dadi image info --daemon: the same figures, as text and as JSON.
    const info = await runDadi(['image', 'info', '--daemon', address, ref]);
    assert.equal(info.code, 0, info.stderr);
    const text = info.stdout.toString();
    t.diagnostic(text);
    assert.match(text, new RegExp(`image: +${ref.replace(/[.:/]/g, '\\$&')}`));
    assert.match(text, /prefetch: +trace /);
    assert.match(text, new RegExp(`demand reads: +${p.demandReads}, ${p.demandHitsPrefetched} hit prefetched data`));
    assert.match(text, new RegExp(`demand misses: +${p.cacheMisses} waited on the registry`));
    assert.match(text, new RegExp(`replay wall: +${(p.wallMs / 1000).toFixed(2)} s`));
    assert.match(text, /prefetched: +\S+ of \S+ planned/);
    const asJson = await runDadi(['image', 'info', '--daemon', address, '--json', 'test/app']);
    assert.equal(asJson.code, 0, asJson.stderr);
    assert.deepEqual((JSON.parse(asJson.stdout.toString()) as { images: ImageStatus[] }).images.map((i) => i.prefetch), [p], 'a part of the reference selects the image');
    const missing = await runDadi(['image', 'info', '--daemon', address, 'no/such:image']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /no\/such:image is not attached by the snapshotter at .* \(attached: .*test\/app:obd\)/);
    // The default address is the snapshotter config's metricsAddress.
    const cfg = join(dir, 'snapshotter.toml');
    await writeFile(cfg, `metricsAddress = "${address}"\n`);
    const byConfig = await runDadi(['image', 'info', '--daemon', '--config', cfg, '--json']);
    assert.equal(byConfig.code, 0, byConfig.stderr);
    assert.equal((JSON.parse(byConfig.stdout.toString()) as DaemonStatus).images.length, 1);

    // /metrics: Prometheus text with the same prefetch figures, the registry client's and the cache's counters.
    const m = await httpGet(address, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type, /^text\/plain/);
    const labels = { image: ref, kind: 'trace' };
    assert.equal(sample(m.body, 'dadi_trace_prefetch_bytes_total', labels), p.issuedBytes);
    assert.equal(sample(m.body, 'dadi_trace_demand_reads_total', labels), p.demandReads);
    assert.equal(sample(m.body, 'dadi_trace_demand_hits_total', labels), p.demandHitsPrefetched);
    assert.equal(sample(m.body, 'dadi_trace_demand_misses_total', labels), p.cacheMisses);
    assert.equal(sample(m.body, 'dadi_trace_replay_seconds_count', labels), 1);
    assert.equal(sample(m.body, 'dadi_registry_blob_bytes_total'), s.registry.bytes);
    assert.ok((sample(m.body, 'dadi_registry_requests_total', { kind: 'blob', status: '206' }) ?? 0) > 0);
    for (const l of layers) assert.ok((sample(m.body, 'dadi_cache_hits_total', { blob: l.digest }) ?? -1) >= 0, `cache counters of ${l.digest}`);
    assert.ok((sample(m.body, 'dadi_snapshotter_process_resident_memory_bytes') ?? 0) > 0, 'the process metrics');
    assert.equal((await httpGet(address, '/nothing')).status, 404);

    await c.done();
    assert.deepEqual((await status(address)).images, [], 'Remove detached the image');
    const after = await httpGet(address, '/metrics');
    assert.equal(sample(after.body, 'dadi_trace_prefetch_bytes_total', labels), p.issuedBytes, 'the totals outlive the detach');
    assert.equal(sample(after.body, 'dadi_trace_replays_running'), 0);
    await d.kill();
  });

  await t.test('whole-layer prefetch: off by default and for the label none; top-first fetches every layer whole, top first, once each, behind demand reads', async (t) => {
    const sock = await socketPath(t);
    const d = await startSnapshotterDaemon(t, { toml: '[prefetch]\nlayers = "top-first"\n', args: ['--metrics-address', sock.path] });
    sock.cleanupAfter();
    const top = await pull(d.client, layers, ref);
    // The label turns it off for one container.
    const off = await container(t, d, 'off', top, { [PREFETCH_LAYERS]: 'none' });
    assert.equal((await status(sock.path)).images[0]?.prefetch, undefined, 'no prefetch with the label none');
    await off.done();

    const DELAY = 500;
    throttle(fp, DELAY);
    img.proxy.reset();
    const c = await container(t, d, 'whole', top);
    const first = await until(() => status(sock.path), (s) => (s.images[0]?.layers ?? []).some((l) => (l.cache?.traceRequests ?? 0) > 0), 'the first prefetch request');
    const byLayer = first.images[0]!.layers.map((l) => l.cache!.traceRequests);
    assert.ok(byLayer[2]! > 0 && byLayer[0] === 0, `the top layer is fetched first (prefetch requests by layer, bottom first: ${byLayer})`);
    assert.equal(first.images[0]!.prefetch!.source, 'layers 2,1,0');
    // A demand read deep in the bottom layer (prefetched last) does not wait for the queue ahead of it.
    const t0 = performance.now();
    const fh = await open(join(c.root, 'filler/base.bin'), 'r');
    await fh.read(Buffer.alloc(65536), 0, 65536, 20 << 20);
    await fh.close();
    const demandMs = performance.now() - t0;
    const during = (await status(sock.path)).images[0]!.prefetch!;
    t.diagnostic(`demand read during the prefetch: ${demandMs.toFixed(0)} ms with ${DELAY} ms per registry request; prefetch then ${JSON.stringify(during)}`);
    assert.ok(during.running && during.issued < during.requests, 'the prefetch was still running');

    const s = await until(() => status(sock.path), (x) => x.images[0]?.prefetch?.running === false, 'the whole-layer prefetch to finish', 120_000);
    const p = s.images[0]!.prefetch!;
    assert.equal(p.kind, 'layers');
    assert.equal(p.issued, p.requests);
    // A few dependent round trips (extent block, data), not the queue ahead of it (the rest of the
    // prefetch; relative, so that a loaded machine slows both sides alike).
    assert.ok(demandMs < 0.6 * p.wallMs, `the demand read took ${demandMs.toFixed(0)} ms, the whole prefetch ${p.wallMs} ms`);
    assert.equal(p.prefetchBytes, s.images[0]!.layers.reduce((n, l) => n + l.dataSize, 0), 'the whole of every layer was planned');
    for (const l of s.images[0]!.layers) {
      assert.ok(l.cache!.presentBytes >= 0.95 * l.blobSize!, `layer ${l.digest}: ${l.cache!.presentBytes} of ${l.blobSize} bytes cached`);
    }
    const fetched = img.proxy.bytesFor(layers.map((l) => l.digest));
    t.diagnostic(`whole layers: ${JSON.stringify(p)}; fetched ${fetched} B of an image of ${imageBytes} B (after the mount)`);
    assert.ok(fetched <= imageBytes, `no byte fetched twice: ${fetched} > ${imageBytes}`);
    fp.clear();
    await c.done();
    assert.deepEqual(await leftovers(d.root), []);
    await d.kill();
  });

  await t.test('a label-listed whole-layer prefetch (bottom,top) fetches those layers in that order and stops on Remove', async (t) => {
    const sock = await socketPath(t);
    const d = await startSnapshotterDaemon(t, { args: ['--metrics-address', sock.path] });
    sock.cleanupAfter();
    const top = await pull(d.client, layers, ref);
    const plain = await container(t, d, 'plain', top);
    assert.equal((await status(sock.path)).images[0]?.prefetch, undefined, 'off by default');
    await plain.done();

    const DELAY = 1500;
    throttle(fp, DELAY);
    const c = await container(t, d, 'listed', top, { [PREFETCH_LAYERS]: 'bottom,top' });
    const first = await until(() => status(sock.path), (s) => (s.images[0]?.layers ?? []).some((l) => (l.cache?.traceRequests ?? 0) > 0), 'the first prefetch request');
    const byLayer = first.images[0]!.layers.map((l) => l.cache!.traceRequests);
    assert.equal(first.images[0]!.prefetch!.source, 'layers 0,2');
    assert.ok(byLayer[0]! > 0 && byLayer[1] === 0 && byLayer[2] === 0, `the bottom layer first, the middle one never (by layer: ${byLayer})`);
    await sleep(DELAY / 2);
    await c.done();
    const afterRemove = blobRequests(fp);
    const summary = (await d.log()).split('\n').filter((l) => l.includes('trace replay summary at detach')).map((l) => JSON.parse(l) as Record<string, unknown>).at(-1);
    t.diagnostic(`stopped: ${JSON.stringify(summary)}`);
    assert.ok(summary && summary.kind === 'layers' && summary.running === false, 'the prefetch ended with the detach');
    assert.ok((summary.issued as number) < (summary.requests as number), 'it stopped before its last request');
    await sleep(2 * DELAY);
    assert.equal(blobRequests(fp), afterRemove, 'no registry request after Remove returned');
    fp.clear();
    assert.deepEqual((await status(sock.path)).images, []);
    assert.deepEqual(await leftovers(d.root), []);
    await d.kill();
  });
});
