import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { copyFile, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { dadiArgv, runDadi, tempDir, vector } from '../helpers/env.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Runs dadi and hashes its stdout as it streams (1 GiB is too much to collect). */
function catSha(args: string[]): Promise<{ code: number | null; bytes: number; sha256: string; stderr: string }> {
  const [cmd, argv] = dadiArgv(args);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const h = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { h.update(d); bytes += d.length; });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, bytes, sha256: h.digest('hex'), stderr }));
  });
}

async function fileSha(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
const A_SHA = '4b7f9fe45840bb4442b2d49676031200641aaf9aea3320b4f811d438ab5eb214';
const AB_SHA = 'cb797f1df32c91195cc89460b3286c2069609bbdf3ab8f4b87b90379ae22224f';
const GIB = 1 << 30;

test('dadi cat of a ZFile-compressed A under a compressed B writes the stacked bytes to stdout', async () => {
  const r = await catSha(['cat', vector('A.lz4.bs4.tar.zlsmt'), vector('B.zstd.bs4.zlsmt')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.bytes, GIB);
  assert.equal(r.sha256, AB_SHA);
});

test('dadi cat -o writes a sparse file with the same bytes', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'disk.img');
  const r = await runDadi(['cat', '-o', out, vector('A.lsmt'), vector('B.lsmt')]);
  assert.equal(r.code, 0, r.stderr);
  const st = await stat(out);
  assert.equal(st.size, GIB);
  assert.ok(st.blocks * 512 < 16 << 20, `only the data runs are allocated (${st.blocks * 512} bytes)`);
  assert.equal(await fileSha(out), AB_SHA);
});

test('dadi cat --upper stacks a writable layer; --size overrides the size; a DATA,INDEX lower reads a writable pair', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'rw.data');
  const index = join(dir, 'rw.index');
  await copyFile(vector('A.rw.data'), data);
  await copyFile(vector('A.rw.index'), index);
  const up = await runDadi(['cat', '--upper', `${data},${index}`, '-o', join(dir, 'a.img'), vector('A.sealed')]);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(await fileSha(join(dir, 'a.img')), A_SHA);
  const pair = await runDadi(['cat', '--size', '64K', `${vector('A.rw.data')},${vector('A.rw.index')}`]);
  assert.equal(pair.code, 0, pair.stderr);
  assert.equal(pair.stdout.length, 64 << 10);
  const head = new Uint8Array(64 << 10);
  const fh = await open(join(dir, 'a.img'), 'r');
  await fh.read(head, 0, head.length, 0);
  await fh.close();
  assert.equal(sha(pair.stdout), sha(head));
  assert.ok(head.some((b) => b !== 0), 'the first 64 KiB of A hold data');
});

test('dadi cat stops quietly when the reader closes the pipe early', async () => {
  const [cmd, argv] = dadiArgv(['cat', vector('A.lsmt')]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});

test('dadi cat names a file that is not a layer', async () => {
  const r = await runDadi(['cat', vector('layer1.tar')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^dadi: .*layer1\.tar/m);
});
