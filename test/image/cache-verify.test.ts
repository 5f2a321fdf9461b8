import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openRemoteImage } from '../../src/image/remote.ts';
import { cachePaths } from '../../src/io/cache.ts';
import { loadPresence, readPresenceSummary } from '../../src/io/cache/presence.ts';
import { runDadi, tempDir } from '../helpers/env.ts';
import { startEmbeddedRegistry } from '../helpers/registry.ts';
import { buildObdImage, generateLayer, pushObdImage } from './remote/fixture.ts';

const MiB = 1 << 20;

interface Report { digest: string; verdict: string; method: string; chunksPresent: number; chunksVerified: number; badChunks: number[] }
const reportsOf = (stdout: Buffer): Report[] => stdout.toString().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Report);

test('dadi cache verify: cached chunks check against the kept table; a flipped byte on disk is found, named and evicted with --evict-bad', async (t) => {
  const dir = await tempDir(t);
  const withTable = await generateLayer(join(dir), { chunks: 4, chunkSize: MiB, virtualSize: 64 * MiB, incompressible: true, compress: 'none', table: true, seed: 1 });
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage([withTable.path], { tables: [withTable.table] });
  await pushObdImage(reg.hostPort, 'cv/app', 'v1', img);
  const cacheDir = join(dir, 'cache');
  const remote = await openRemoteImage(`${reg.hostPort}/cv/app:v1`, { cacheDir, background: { enable: false }, logStatsOnClose: false });
  const buf = Buffer.alloc(MiB);
  for (const off of withTable.offsets.slice(0, 2)) await remote.disk.read(buf, off);
  await remote.close();

  const digest = img.layers[0]!.digest;
  const ok = await runDadi(['cache', 'verify', '--cache-dir', cacheDir, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const [r] = reportsOf(ok.stdout);
  assert.equal(r!.digest, digest);
  assert.deepEqual([r!.verdict, r!.method], ['ok', 'table']);
  assert.ok(r!.chunksPresent >= 2 * 16 && r!.chunksVerified === r!.chunksPresent, JSON.stringify(r));

  // Flip a byte in the middle of the last fully cached 64 KiB chunk of the data file.
  const p = cachePaths(cacheDir, digest.slice(7));
  const sum = (await readPresenceSummary(p.mapPath))!;
  const map = (await loadPresence(p.mapPath, sum.size, sum.unit))!;
  let chunk = -1;
  for (let i = 0; (i + 1) * 65536 <= withTable.table!.offset; i++) if (map.rangePresent(i * 65536, (i + 1) * 65536)) chunk = i;
  assert.ok(chunk > 0);
  const fh = await open(p.dataPath, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, chunk * 65536 + 32768);
  b[0] ^= 0x40;
  await fh.write(b, 0, 1, chunk * 65536 + 32768);
  await fh.close();

  const bad = await runDadi(['cache', 'verify', '--cache-dir', cacheDir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout.toString(), new RegExp(`^bad\\s+${digest} .*bad chunks: ${chunk}\\b`, 'm'));
  assert.match(bad.stderr, /1 blobs, 0 ok, 1 bad/);

  const evicted = await runDadi(['cache', 'verify', '--cache-dir', cacheDir, '--evict-bad', '--json']);
  assert.equal(evicted.code, 1);
  assert.ok(!existsSync(p.mapPath) && !existsSync(p.dataPath) && !existsSync(p.tablePath));
  const after = await runDadi(['cache', 'verify', '--cache-dir', cacheDir, '--json']);
  assert.equal(after.code, 0);
  assert.deepEqual(reportsOf(after.stdout), []);
});

test('dadi cache verify: a blob cached without a table is reported unchecked, not bad; a missing cache is a clear error', async (t) => {
  const dir = await tempDir(t);
  const plain = await generateLayer(dir, { chunks: 2, chunkSize: MiB, virtualSize: 16 * MiB, incompressible: true, seed: 2 });
  const reg = await startEmbeddedRegistry(t);
  const img = await buildObdImage([plain.path]);
  await pushObdImage(reg.hostPort, 'cv/plain', 'v1', img);
  const cacheDir = join(dir, 'cache');
  const remote = await openRemoteImage(`${reg.hostPort}/cv/plain:v1`, { cacheDir, background: { enable: false }, logStatsOnClose: false });
  await remote.disk.read(Buffer.alloc(4096), plain.offsets[0]!);
  await remote.close();
  const res = await runDadi(['cache', 'verify', '--cache-dir', cacheDir, '--json']);
  assert.equal(res.code, 0);
  const [r] = reportsOf(res.stdout);
  assert.deepEqual([r!.verdict, r!.method], ['unchecked', 'none']);
  const missing = await runDadi(['cache', 'verify', '--cache-dir', join(dir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not a dadi cache/);
});
