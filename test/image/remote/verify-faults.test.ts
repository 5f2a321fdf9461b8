/**
 * Verified lazy reads against every lie the fault proxy tells (test/helpers/fault-proxy.ts): a
 * flipped bit or byte, another blob's bytes or the same blob's bytes from elsewhere for a range
 * (content lies: a well-formed answer only the digest can catch), and a body cut mid-way, shorter
 * than its range, or labelled with a disagreeing Content-Range (transport lies). For an
 * uncompressed and a zstd layer, read completely through the remote image API:
 * - a lying only upstream: no read returns a wrong byte; the reads that touch a lie fail with EIO
 *   naming the layer, the chunk(s) and the upstream; once the upstream behaves every read is right
 *   and the cache holds only chunks that match (`dadi cache verify`'s check, offline);
 * - a lying upstream that spares single-chunk refetches (content lies): every chunk served wrong
 *   is detected (the verifier's mismatch count equals the proxy's count of chunks it altered) and
 *   recovered, every read right;
 * - a lying mirror in front of the good registry: every read right; content lies are caught by
 *   the digests and refetched from the registry (the refetch path), transport lies by the client
 *   and read from the registry (the fallback path).
 * And the daemon: `dadi serve` behind a proxy telling each kind of lie in turn, `nbdcopy` of the
 * whole export fails with EIO each time, the daemon logs layer, chunk and upstream and stays up;
 * once the proxy behaves the copy is the layer's content and the daemon exits cleanly.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_CHUNK_SIZE } from '../../../src/format/tar/digest-table.ts';
import { verifyCache } from '../../../src/image/cache-verify.ts';
import { openRemoteImage, type RemoteImage } from '../../../src/image/remote.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { CONTENT_LIES, startFaultProxy, TRANSPORT_LIES, type CorruptMode, type FaultProxy, type ProxyLogEntry } from '../../helpers/fault-proxy.ts';
import { startDockerRegistry, type TestRegistry } from '../../helpers/registry.ts';
import { startServe } from '../../nbd/serve-process.ts';
import { buildObdImage, generateLayer, pushObdImage } from './fixture.ts';
import { openLocalProbe, type LocalProbe } from './probe.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
const VSIZE = 64 * MiB;
const PIECE = 256 << 10;
const ALL: readonly CorruptMode[] = [...CONTENT_LIES, ...TRANSPORT_LIES];

interface World { reg: TestRegistry; probe: LocalProbe; dir: string; digest: string; other: string; chunkSize: number; offsets: number[] }

/** One registry holding the layer under test (tag v1) and another layer of the same size (tag other). */
async function world(t: TestContext, compress: 'none' | 'zstd', seed: number): Promise<World> {
  const dir = await tempDir(t);
  const opts = { chunks: 12, chunkSize: MiB, virtualSize: VSIZE, incompressible: true, compress, table: true } as const;
  const layer = await generateLayer(dir, { ...opts, seed });
  const otherLayer = await generateLayer(dir, { ...opts, seed: seed + 1 });
  const img = await buildObdImage([layer.path], { tables: [layer.table] });
  const otherImg = await buildObdImage([otherLayer.path], { tables: [otherLayer.table] });
  assert.equal(otherImg.layers[0]!.size, img.layers[0]!.size, 'the other blob is as large, so every range has other bytes');
  const reg = await startDockerRegistry(t);
  await pushObdImage(reg.hostPort, 'verify/faults', 'v1', img);
  await pushObdImage(reg.hostPort, 'verify/faults', 'other', otherImg);
  const probe = await openLocalProbe([layer.path]);
  t.after(() => probe.close());
  return { reg, probe, dir, digest: img.layers[0]!.digest, other: otherImg.layers[0]!.digest, chunkSize: DEFAULT_CHUNK_SIZE, offsets: layer.offsets };
}

const blobGet = (digest: string) => (req: IncomingMessage): boolean => req.method === 'GET' && (req.url ?? '').endsWith(`/blobs/${digest}`);

/** Makes `proxy` lie with `mode` about every blob response larger than `minBytes`. */
function lie(w: World, proxy: FaultProxy, mode: CorruptMode, minBytes: number): void {
  proxy.clear();
  proxy.inject({ kind: 'corrupt', mode, minBytes, other: w.other }, { match: blobGet(w.digest), times: Infinity });
}

/** How many (response, chunk) pairs the proxy served with wrong bytes. */
function alteredChunks(log: readonly ProxyLogEntry[], chunkSize: number): number {
  let n = 0;
  for (const e of log) {
    const chunks = new Set<number>();
    for (const s of e.altered ?? []) {
      for (let c = Math.floor(s.start / chunkSize); c <= Math.floor((s.end - 1) / chunkSize); c++) chunks.add(c);
    }
    n += chunks.size;
  }
  return n;
}

interface Outcome { right: number; wrong: number; errors: Error[] }

/** Reads the whole disk in pieces, comparing each with the layer's true content. */
async function readAll(remote: RemoteImage, probe: LocalProbe): Promise<Outcome> {
  const out: Outcome = { right: 0, wrong: 0, errors: [] };
  const buf = Buffer.alloc(PIECE);
  for (let off = 0; off < VSIZE; off += PIECE) {
    try {
      await remote.disk.read(buf, off);
    } catch (err) {
      out.errors.push(err as Error);
      continue;
    }
    if (buf.equals((await probe.read(off, PIECE)).bytes)) out.right++;
    else out.wrong++;
  }
  return out;
}

async function open(t: TestContext, w: World, ref: string, cacheDir: string, mirror?: FaultProxy): Promise<RemoteImage> {
  const remote = await openRemoteImage(ref, {
    cacheDir, background: { enable: false }, logStatsOnClose: false, clientOptions: { backoffMs: 10 },
    ...(mirror ? { mirrors: [{ host: w.reg.hostPort, endpoint: mirror.url }], upstreamTimeoutMs: 10_000 } : {}),
  });
  t.after(() => remote.close());
  assert.equal(remote.info.layers[0]!.verified, true);
  return remote;
}

/** The cache, checked offline against the layer's digest table: every cached chunk matches. */
async function assertCacheClean(cacheDir: string, digest: string): Promise<void> {
  const reports = await verifyCache(cacheDir);
  const r = reports.find((x) => x.digest === digest);
  assert.ok(r, 'the blob is in the cache');
  assert.deepEqual({ verdict: r.verdict, bad: r.badChunks }, { verdict: 'ok', bad: [] }, JSON.stringify(r));
  assert.ok(r.chunksVerified > 0);
}

for (const [compress, seed] of [['none', 21], ['zstd', 31]] as const) {
  const kind = compress === 'none' ? 'uncompressed' : 'zstd';

  test(`${kind} layer, the only upstream lies (every lie the proxy tells): never a wrong byte, EIO naming layer, chunk and upstream; right once it behaves`, async (t) => {
    if (!requireSystem(t, { commands: ['docker-registry'] })) return;
    const w = await world(t, compress, seed);
    const proxy = await startFaultProxy(t, w.reg.url);
    for (const mode of ALL) {
      await t.test(mode, async (st) => {
        const cacheDir = join(w.dir, `cache-only-${mode}`);
        proxy.clear();
        const remote = await open(st, w, `${proxy.hostPort}/verify/faults:v1`, cacheDir);
        const from = proxy.log.length;
        lie(w, proxy, mode, 0); // after attach: the table and the index were read right
        const bad = await readAll(remote, w.probe);
        const served = proxy.log.slice(from);
        assert.equal(bad.wrong, 0, 'no read returned a wrong byte');
        assert.ok(served.some((e) => e.mode === mode), `the proxy told the lie (${mode})`);
        assert.ok(bad.errors.length >= 12, `the reads of the lied-about data failed (${bad.errors.length} failed, ${bad.right} right)`);
        for (const e of bad.errors) {
          assert.equal((e as NodeJS.ErrnoException).code, 'EIO', e.message);
          assert.match(e.message, new RegExp(`layer 0 \\(${w.digest}\\): chunks? \\d+(\\.\\.\\d+)? \\(bytes \\d+\\.\\.\\d+\\) from .*${proxy.hostPort}`), e.message);
        }
        const v = remote.layers[0]!.verify!;
        if (CONTENT_LIES.includes(mode)) {
          assert.match(bad.errors[0]!.message, /does not match its digest/);
          assert.ok(v.mismatches >= 12 && v.failures >= 12 && v.recovered === 0 && v.fetchFailures === 0, JSON.stringify(v));
        } else {
          // The client rejects a broken answer before the digests see it; the read fails all the same.
          assert.match(bad.errors[0]!.message, /could not be fetched/);
          assert.ok(v.fetchFailures >= 12 && v.mismatches === 0, JSON.stringify(v));
        }
        proxy.clear();
        const good = await readAll(remote, w.probe);
        assert.deepEqual({ wrong: good.wrong, failed: good.errors.length }, { wrong: 0, failed: 0 }, 'the cache kept no bad bytes');
        await remote.close();
        await assertCacheClean(cacheDir, w.digest);
      });
    }
  });

  test(`${kind} layer, the only upstream lies but spares single-chunk refetches (content lies): every altered chunk is detected and recovered, every read right`, async (t) => {
    if (!requireSystem(t, { commands: ['docker-registry'] })) return;
    const w = await world(t, compress, seed + 2);
    const proxy = await startFaultProxy(t, w.reg.url);
    for (const mode of CONTENT_LIES) {
      await t.test(mode, async (st) => {
        const cacheDir = join(w.dir, `cache-refetch-${mode}`);
        proxy.clear();
        const remote = await open(st, w, `${proxy.hostPort}/verify/faults:v1`, cacheDir);
        const from = proxy.log.length;
        lie(w, proxy, mode, w.chunkSize);
        const r = await readAll(remote, w.probe);
        assert.deepEqual({ wrong: r.wrong, failed: r.errors.length }, { wrong: 0, failed: 0 }, r.errors[0]?.message);
        const altered = alteredChunks(proxy.log.slice(from), w.chunkSize);
        assert.ok(altered >= 12, `the proxy served ${altered} chunks wrong`);
        const v = remote.layers[0]!.verify!;
        assert.deepEqual({ mismatches: v.mismatches, recovered: v.recovered, failures: v.failures }, { mismatches: altered, recovered: altered, failures: 0 },
          'every chunk served wrong was detected, and recovered by its refetch');
        await remote.close();
        await assertCacheClean(cacheDir, w.digest);
      });
    }
  });

  test(`${kind} layer, a lying mirror in front of the good registry (every lie): every read right, content lies refetched from the registry`, async (t) => {
    if (!requireSystem(t, { commands: ['docker-registry'] })) return;
    const w = await world(t, compress, seed + 4);
    const mirror = await startFaultProxy(t, w.reg.url);
    for (const mode of ALL) {
      await t.test(mode, async (st) => {
        const cacheDir = join(w.dir, `cache-mirror-${mode}`);
        mirror.clear();
        const from = mirror.log.length;
        // The mirror lies from the start, except for the small reads of attach (the table, the index).
        lie(w, mirror, mode, w.chunkSize - 1);
        const remote = await open(st, w, `${w.reg.hostPort}/verify/faults:v1`, cacheDir, mirror);
        const r = await readAll(remote, w.probe);
        assert.deepEqual({ wrong: r.wrong, failed: r.errors.length }, { wrong: 0, failed: 0 }, r.errors[0]?.message);
        const log = mirror.log.slice(from);
        assert.ok(log.some((e) => e.mode === mode), `the mirror served (and lied about) blob ranges with ${mode}`);
        const v = remote.layers[0]!.verify!;
        if (CONTENT_LIES.includes(mode)) {
          const altered = alteredChunks(log, w.chunkSize);
          assert.ok(altered >= 1 && v.mismatches === altered && v.recovered === altered && v.failures === 0,
            `every chunk the mirror served wrong (${altered}) detected and recovered from the registry: ${JSON.stringify(v)}`);
        } else {
          assert.deepEqual({ mismatches: v.mismatches, failures: v.failures, fetchFailures: v.fetchFailures }, { mismatches: 0, failures: 0, fetchFailures: 0 },
            'broken answers never reached the digests: the client rejected them and the registry served the range');
        }
        await remote.close();
        await assertCacheClean(cacheDir, w.digest);
      });
    }
  });
}

test('a retry rewrites what a cut attempt delivered: chunks checked as they arrived are checked again (the retry flips a byte the cut attempt had sent right)', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry'] })) return;
  const w = await world(t, 'none', 51);
  const proxy = await startFaultProxy(t, w.reg.url);
  const cacheDir = join(w.dir, 'cache');
  const remote = await open(t, w, `${proxy.hostPort}/verify/faults:v1`, cacheDir);
  const from = proxy.log.length;
  // Attempt 1 sends the first half of the range right, then closes; the client retries, and
  // attempt 2 flips a byte of the range's second chunk (one attempt 1 delivered whole and right).
  const big = (req: IncomingMessage): boolean => blobGet(w.digest)(req) && /^bytes=\d+-\d+$/.test(String(req.headers.range));
  proxy.inject({ kind: 'corrupt', mode: 'cut', minBytes: w.chunkSize }, { match: big });
  proxy.inject({ kind: 'corrupt', mode: 'flipByte', at: w.chunkSize + 100, minBytes: w.chunkSize }, { match: big });
  const buf = Buffer.alloc(PIECE);
  const off = w.offsets[0]!;
  await remote.disk.read(buf, off);
  assert.ok(buf.equals((await w.probe.read(off, PIECE)).bytes), 'the read returned the right bytes');
  const log = proxy.log.slice(from);
  assert.deepEqual(log.filter((e) => e.mode).map((e) => e.mode), ['cut', 'flipByte'], 'the read met the cut, then the flip on its retry');
  const v = remote.layers[0]!.verify!;
  assert.deepEqual({ mismatches: v.mismatches, recovered: v.recovered }, { mismatches: 1, recovered: 1 }, 'the flipped chunk of the retry was caught and refetched');
  await remote.close();
  await assertCacheClean(cacheDir, w.digest);
});

test('dadi serve + nbdcopy behind a proxy that cuts bodies, then serves another blob, then flips a bit: each copy fails with EIO, the daemon names layer, chunk and upstream and stays up; then the disk is the layer', async (t) => {
  if (!requireSystem(t, { commands: ['docker-registry', 'nbdcopy'] })) return;
  const w = await world(t, 'none', 41);
  const proxy = await startFaultProxy(t, w.reg.url);
  const srv = await startServe(t, [`${proxy.hostPort}/verify/faults:v1`, '--listen', `unix:${join(w.dir, 's.sock')}`,
    '--cache-dir', join(w.dir, 'cache'), '--no-background']);
  const out = join(w.dir, 'disk.img');
  /** Waits until the fetches a failed copy started (read-ahead) have gone through the proxy. */
  const settle = async (): Promise<void> => {
    for (let seen = -1; seen !== proxy.log.length;) {
      seen = proxy.log.length;
      await new Promise((r) => setTimeout(r, 750));
    }
  };
  for (const [mode, line] of [['cut', 'verify: the upstream could not deliver the chunks'], ['otherBlob', 'verify: chunk does not match its digest'],
    ['flipBit', 'verify: chunk does not match its digest']] as const) {
    const logged = srv.stderr().length;
    lie(w, proxy, mode, 0);
    const failed = await run('nbdcopy', [srv.info.uri, out], { timeout: 120_000 }).then(() => undefined, (err: { stderr?: string }) => err);
    assert.ok(failed, `nbdcopy must fail: every fetch is a lie (${mode})`);
    assert.match(String(failed.stderr), /Input\/output error/i);
    const rec = srv.stderr().slice(logged).split('\n').filter((l) => l.includes(line)).map((l) => JSON.parse(l) as { layer: string; chunk: number; upstream: string });
    assert.ok(rec.length >= 1, `the daemon logged '${line}' for ${mode}`);
    for (const r of rec) {
      assert.ok(r.layer.includes(w.digest) && Number.isInteger(r.chunk) && r.upstream.includes(proxy.hostPort), JSON.stringify(r));
    }
    await settle();
  }
  proxy.clear();
  await run('nbdcopy', [srv.info.uri, out], { timeout: 120_000 });
  const want = createHash('sha256').update((await w.probe.read(0, VSIZE)).bytes).digest('hex');
  assert.equal(createHash('sha256').update(await readFile(out)).digest('hex'), want, 'the served disk is the layer content');
  assert.equal(await srv.stop(), 0, 'the daemon exits cleanly');
});
