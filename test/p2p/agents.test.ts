/**
 * P2P on loopback, in one process: a real `docker-registry` behind a byte-counting proxy, the
 * root (`startRoot`) in front of it, and eight agents with their own block caches on loopback
 * ports, each attaching the image through its agent's route and reading the same ranges at once.
 * Every host reads the right bytes; the registry serves about one copy; a dead mid-tree agent
 * fails no read; peers without the token and requests that went round a loop are refused.
 * (The multi-process, network-namespace version is test/p2p/netns.test.ts.)
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { request } from 'undici';
import { openRemoteImage, type RemoteImage } from '../../src/image/remote.ts';
import { BlobCache } from '../../src/io/cache.ts';
import { P2PAgent } from '../../src/p2p/agent.ts';
import type { P2PConfig } from '../../src/p2p/config.ts';
import { startRoot } from '../../src/p2p/root.ts';
import { BlobTree, ROOT } from '../../src/p2p/topology.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { requireSystem, tempDir, vector } from '../helpers/env.ts';
import { startCountingProxy } from '../helpers/counting-proxy.ts';
import { freePort, startDockerRegistry } from '../helpers/registry.ts';
import { buildObdImage, pushObdImage } from '../image/remote/fixture.ts';

const LAYERS = [vector('ext4-L1.lsmt'), vector('ext4-L2.zstd.zlsmt')];
const RANGES: Array<[number, number]> = [[0, 8 << 20], [64 << 20, 1 << 20], [300 << 20, 2 << 20], [(1 << 30) - (1 << 20), 1 << 20]];
const TOKEN = 'test-peer-token';

async function readRanges(image: RemoteImage): Promise<Buffer[]> {
  return Promise.all(RANGES.map(async ([offset, length]) => {
    const buf = Buffer.alloc(length);
    await image.disk.read(buf, offset);
    return buf;
  }));
}

async function cacheFor(t: TestContext): Promise<BlobCache> {
  const cache = await BlobCache.open({ dir: join(await tempDir(t), 'cache'), capacityBytes: 1 << 30, metricsRegistry: null });
  t.after(() => cache.close());
  return cache;
}

function client(t: TestContext): RegistryClient {
  const c = new RegistryClient({ insecure: true });
  t.after(() => c.close());
  return c;
}

async function open(t: TestContext, ref: string, cache: BlobCache, agent?: P2PAgent): Promise<RemoteImage> {
  const image = await openRemoteImage(ref, { cache, insecure: true, background: { enable: false }, logStatsOnClose: false, statsIntervalMs: 0,
    ...(agent ? { routes: [agent.route] } : {}) });
  t.after(() => image.close().catch(() => {}));
  return image;
}

test('eight agents read one image at once through the tree: right bytes, one registry copy, dead parent skipped, token and loops enforced', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const reg = await startDockerRegistry(t);
  const img = await buildObdImage(LAYERS);
  await pushObdImage(reg.hostPort, 'vec/ext4', 'v1', img);
  const counter = await startCountingProxy(t, reg.url);
  const ref = `${counter.hostPort}/vec/ext4:v1`;
  const digests = img.layers.map((l) => l.digest);

  // One host alone, straight from the registry: the expected bytes and what one copy costs.
  const alone = await open(t, ref, await cacheFor(t));
  const expected = await readRanges(alone);
  await alone.close();
  const oneCopy = counter.bytesFor(digests);
  assert.ok(oneCopy > 0);
  counter.reset();

  const root = await startRoot({ listen: '127.0.0.1:0', token: TOKEN, cache: await cacheFor(t), client: client(t) });
  t.after(() => root.close());
  const members = await Promise.all(Array.from({ length: 8 }, async () => `127.0.0.1:${await freePort()}`));
  const config = (self: string): P2PConfig => ({ self, listen: self, root: root.address, members, fanout: 2, token: TOKEN, timeoutMs: 2000 });
  const agents = new Map<string, P2PAgent>();
  for (const m of members) {
    const agent = await P2PAgent.start(config(m), { cache: await cacheFor(t), client: client(t) });
    t.after(() => agent.close());
    agents.set(m, agent);
  }

  // A member in the middle of the first blob's tree is dead before anyone reads.
  const tree = new BlobTree(digests[0]!, members, 2);
  const dead = tree.order[1]!;
  assert.ok(tree.children(dead).length > 0, 'the dead member has children');
  await agents.get(dead)!.close();

  const live = members.filter((m) => m !== dead);
  const images = await Promise.all(live.map(async (m) => open(t, ref, await cacheFor(t), agents.get(m))));
  const results = await Promise.all(images.map(readRanges));
  for (const [h, got] of results.entries()) {
    for (let i = 0; i < RANGES.length; i++) assert.ok(got[i]!.equals(expected[i]!), `host ${live[h]} range ${i} differs`);
  }
  const served = counter.bytesFor(digests);
  assert.ok(served <= 1.2 * oneCopy, `the registry served ${served} bytes for ${live.length} hosts; one copy is ${oneCopy}`);
  // The children of the dead member re-attached one level up and read through the tree, not the registry.
  for (const c of tree.children(dead)) assert.equal(tree.parentOf(c, (m) => m === dead), tree.parentOf(dead));
  assert.ok(root.server.stats.bytes > 0, 'the root served the top of the trees');
  const peerBytes = live.reduce((s, m) => s + (agents.get(m)!.stats?.bytes ?? 0), 0);
  assert.ok(peerBytes > 0, 'agents served their children');
  t.diagnostic(`registry ${served} B (one copy ${oneCopy} B), root served ${root.server.stats.bytes} B, agents served ${peerBytes} B`);

  // Refusals, as curl would see them.
  const anyAgent = live[0]!;
  const url = `http://${anyAgent}/blobs/${digests[0]}`;
  const headers = { 'x-dadi-repository': `${counter.hostPort}/vec/ext4`, 'x-dadi-blob-size': String(img.layers[0]!.size), range: 'bytes=0-1023' };
  const noToken = await request(url, { headers });
  assert.equal(noToken.statusCode, 401);
  await noToken.body.dump();
  const wrongToken = await request(url, { headers: { ...headers, authorization: 'Bearer nope' } });
  assert.equal(wrongToken.statusCode, 401);
  await wrongToken.body.dump();
  const loop = await request(url, { headers: { ...headers, authorization: `Bearer ${TOKEN}`, 'x-dadi-p2p-path': `10.9.9.9:1,${anyAgent}` } });
  assert.equal(loop.statusCode, 508);
  await loop.body.dump();
  const ok = await request(url, { headers: { ...headers, authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.statusCode, 206);
  assert.equal(ok.headers['content-range'], `bytes 0-1023/${img.layers[0]!.size}`);
  assert.equal((await ok.body.arrayBuffer()).byteLength, 1024);
  assert.equal(ROOT, '@root');
});
