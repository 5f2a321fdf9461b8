/**
 * `dadi serve` as a process over the reference vector stacks (plain, ZFile, tar-wrapped):
 * what real clients read equals `dadi cat` of the same stack and the manifest's hash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { requireSystem, runDadi, tempDir, vector } from '../helpers/env.ts';
import { startServe } from './serve-process.ts';
import { run } from './tools.ts';

const STACKS: Array<[string, string[], string]> = [
  ['plain', ['A.lsmt', 'B.lsmt'], 'cb797f1df32c91195cc89460b3286c2069609bbdf3ab8f4b87b90379ae22224f'],
  ['ZFile', ['A.zstd.bs4.zlsmt', 'B.zstd.bs4.zlsmt'], 'cb797f1df32c91195cc89460b3286c2069609bbdf3ab8f4b87b90379ae22224f'],
  ['tar-wrapped', ['A.lz4.bs4.tar.zlsmt'], '4b7f9fe45840bb4442b2d49676031200641aaf9aea3320b4f811d438ab5eb214'],
];

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

for (const [kind, layers, hash] of STACKS) {
  test(`nbdcopy of a ${kind} vector stack equals dadi cat and the manifest hash`, async (t) => {
    if (!requireSystem(t, { commands: ['nbdcopy', 'nbdinfo', 'qemu-img'] })) return;
    const dir = await tempDir(t);
    const files = layers.map(vector);
    const srv = await startServe(t, [...files, '--listen', `unix:${join(dir, 'nbd.sock')}`, '--export-name', 'img']);
    assert.equal(srv.info.writable, false);
    const info = JSON.parse((await run('nbdinfo', ['--json', srv.info.uri])).stdout).exports[0];
    assert.equal(info['export-size'], 1024 * 1024 * 1024);
    assert.equal(info.is_read_only, true);
    assert.ok(info.contexts.includes('base:allocation'));

    const viaNbd = join(dir, 'nbd.raw');
    const viaCat = join(dir, 'cat.raw');
    await run('nbdcopy', [srv.info.uri, viaNbd], 120_000);
    const cat = await runDadi(['cat', '-o', viaCat, ...files]);
    assert.equal(cat.code, 0, cat.stderr);
    // qemu-img compare is byte-exact and skips zero runs quickly (cmp of sparse 1 GiB files is slow).
    assert.match((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', viaNbd, viaCat], 120_000)).stdout, /identical/);
    assert.match((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', viaCat, srv.info.uri], 120_000)).stdout, /identical/);
    assert.equal(await sha256File(viaNbd), hash);
    assert.equal(await srv.stop(), 0);
  });
}

