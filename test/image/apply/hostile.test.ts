/**
 * Hostile and broken layers: every escape attempt fails with an error naming the entry, and
 * nothing outside the root is created or changed (a sentinel directory beside the root is
 * compared before and after). Corrupt and truncated archives fail with a FormatError.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { FormatError } from '../../../src/errors.ts';
import { ApplyError, applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';
import { packTar, RawTar, streamOf, type PackEntry } from './tar-build.ts';

const SYSTEM = { root: true, commands: ['mknod', 'mkfifo', 'getfattr'] };

interface Arena { scratch: string; root: string; sentinel: string; check(): Promise<void> }

/** scratch/{root, sentinel/f}; check() proves nothing outside root changed. */
async function arena(t: TestContext): Promise<Arena> {
  const scratch = await tempDir(t);
  const root = join(scratch, 'root');
  const sentinel = join(scratch, 'sentinel');
  await mkdir(root);
  await mkdir(sentinel);
  await writeFile(join(sentinel, 'f'), 'sentinel\n');
  const before = await walkTree(sentinel, { includeRoot: true });
  return {
    scratch, root, sentinel,
    async check() {
      assert.deepEqual((await readdir(scratch)).sort(), ['root', 'sentinel'], 'nothing created beside the root');
      assert.deepEqual(diffTrees(await walkTree(sentinel, { includeRoot: true }), before), [], 'sentinel untouched');
      assert.equal(existsSync('/dadi-escape'), false);
      assert.equal(existsSync('/tmp/dadi-escape'), false);
    },
  };
}

async function refused(a: Arena, entries: PackEntry[] | Buffer, entry: string, why: RegExp): Promise<void> {
  const tar = Buffer.isBuffer(entries) ? entries : await packTar(entries);
  await assert.rejects(applyLayer(streamOf(tar), a.root), (err: unknown) => {
    assert.ok(err instanceof ApplyError, `expected an ApplyError, got ${String(err)}`);
    assert.equal(err.entry, entry);
    assert.ok(err.message.includes(JSON.stringify(entry)), `message names the entry: ${err.message}`);
    assert.match(err.message, why);
    return true;
  });
  await a.check();
}

const f = (name: string, data = 'x\n'): PackEntry => ({ name, mode: 0o644, data });
const sym = (name: string, linkname: string): PackEntry => ({ name, type: 'symlink', linkname });
const hard = (name: string, linkname: string): PackEntry => ({ name, type: 'link', linkname });

test('names climbing above the root are refused; absolute names land inside the root', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const a = await arena(t);
  await refused(a, [f('../escape')], '../escape', /escapes the root/);
  await refused(a, [f('ok'), f('a/../../escape')], 'a/../../escape', /escapes the root/);
  await refused(a, [f('/../escape')], '/../escape', /escapes the root/);
  await refused(a, [f('x'), hard('hl', '../sentinel/f')], 'hl', /hard link target "..\/sentinel\/f" escapes the root/);
  // Like containerd: absolute names are taken relative to the root; inner ".." that stays inside is fine.
  await applyLayer(streamOf(await packTar([f('/etc/dadi-test-passwd', 'root:x:0:0\n'), f('./a/../b', 'b\n')])), a.root);
  assert.equal(await readFile(join(a.root, 'etc/dadi-test-passwd'), 'utf8'), 'root:x:0:0\n');
  assert.equal(existsSync('/etc/dadi-test-passwd'), false);
  assert.equal(await readFile(join(a.root, 'b'), 'utf8'), 'b\n');
  await a.check();
});

test('nothing is written through a symlink planted earlier in the same layer', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const a = await arena(t);
  await refused(a, [sym('evil', '..'), f('evil/dadi-escape')], 'evil/dadi-escape', /"evil", which is a symlink/);
  await refused(a, [sym('evil2', '/'), f('evil2/tmp/dadi-escape')], 'evil2/tmp/dadi-escape', /"evil2", which is a symlink/);
  await refused(a, [sym('sent', '../sentinel'), f('sent/f', 'overwritten\n')], 'sent/f', /symlink/);
  await refused(a, [{ name: 'd', type: 'directory' }, sym('d/up', '../..'), { name: 'd/up/newdir', type: 'directory' }], 'd/up/newdir', /"d\/up", which is a symlink/);
  await refused(a, [sym('s3', '../sentinel'), { name: 's3/fifo', type: 'fifo' }], 's3/fifo', /symlink/);
  await refused(a, [f('ok-target'), sym('s4', '../sentinel'), hard('s4/h', 'ok-target')], 's4/h', /symlink/);
  // A directory already checked, then replaced by a symlink within the same layer.
  const dirThenLink = (name: string): PackEntry[] => [{ name, type: 'directory' }, f(`${name}/x`), sym(name, '../sentinel'), f(`${name}/f`, 'overwritten\n')];
  await refused(a, dirThenLink('swap'), 'swap/f', /"swap", which is a symlink/);
  await refused(a, [{ name: 'w', type: 'directory' }, f('w/x'), f('.wh.w', ''), sym('w', '../sentinel'), f('w/f', 'overwritten\n')], 'w/f', /"w", which is a symlink/);
  await refused(a, [{ name: 'p/q', type: 'directory' }, f('p/q/x'), sym('p', '../sentinel'), f('p/q/f')], 'p/q/f', /"p", which is a symlink/);
});

test('a symlink from a lower layer is never followed: writes, hard links and whiteouts through it are refused', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const a = await arena(t);
  await applyLayer(streamOf(await packTar([sym('lnk', '../sentinel'), sym('victim', '../sentinel/f'), sym('out', '../sentinel/f'), f('real', 'r\n')])), a.root);
  await a.check();
  await refused(a, [f('lnk/f', 'overwritten\n')], 'lnk/f', /"lnk", which is a symlink/);
  await refused(a, [f('lnk/new')], 'lnk/new', /symlink/);
  await refused(a, [{ name: 'lnk/sub', type: 'directory' }], 'lnk/sub', /symlink/);
  await refused(a, [{ name: 'lnk/dev', type: 'character-device', devmajor: 1, devminor: 3 }], 'lnk/dev', /symlink/);
  await refused(a, [f('lnk/.wh.f', '')], 'lnk/.wh.f', /whiteout goes through "lnk", which is a symlink/);
  await refused(a, [f('lnk/.wh..wh..opq', '')], 'lnk/.wh..wh..opq', /whiteout goes through "lnk"/);
  await refused(a, [hard('h', 'lnk/f')], 'h', /hard link target goes through "lnk", which is a symlink/);
  await refused(a, [hard('h', 'nope')], 'h', /hard link target "nope" does not exist/);
  await refused(a, [hard('h', 'gone/deeper')], 'h', /hard link target "gone\/deeper" does not exist/);

  // Replacing the symlinks themselves is fine and leaves their targets alone.
  await applyLayer(streamOf(await packTar([f('victim', 'mine now\n'), hard('h2', 'out'), f('.wh.lnk', '')])), a.root);
  assert.equal(await readFile(join(a.root, 'victim'), 'utf8'), 'mine now\n');
  assert.equal(existsSync(join(a.root, 'lnk')), false);
  const h2 = await lstat(join(a.root, 'h2'));
  assert.ok(h2.isSymbolicLink(), 'a hard link to a symlink links the symlink, not what it points to');
  assert.equal((await lstat(join(a.sentinel, 'f'))).nlink, 1);
  await a.check();
});

test('corrupt and truncated layers fail with a FormatError naming the layer and offset', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const a = await arena(t);
  const big = Buffer.alloc(200_000, 7);
  const good = await packTar([f('first', 'one\n'), { name: 'big', data: big }, f('last', 'z\n')]);
  const expectFormat = async (blob: Buffer, why: RegExp) => {
    await assert.rejects(applyLayer(streamOf(blob), a.root, { name: 'sha256:feed' }), (err: unknown) => {
      assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
      assert.equal(err.file, 'sha256:feed');
      assert.match(err.message, why);
      return true;
    });
    await a.check();
  };
  await expectFormat(good.subarray(0, 1536 + 100_000), /truncated.*"big"|"big".*Unexpected end/);
  // Cut exactly after the data of "big": headers and data line up, only the end blocks are missing.
  await expectFormat(good.subarray(0, 512 + 512 + 512 + 200_192), /after entry "big"|in or after entry "big"/);
  const noEnd = (await packTar([f('only', 'o\n')])).subarray(0, 1024);
  await expectFormat(noEnd, /end-of-archive/);
  const badSum = Buffer.from(good);
  badSum[0] ^= 0x20;
  await expectFormat(badSum, /before the first entry.*Invalid tar header/);
  await expectFormat(Buffer.from('this is not a tar file at all, nor gzip, nor zstd'.repeat(30)), /Invalid tar header|corrupt/);
  await expectFormat(Buffer.alloc(0), /end-of-archive/);
  const gz = gzipSync(good);
  await expectFormat(gz.subarray(0, gz.length >> 1), /corrupt or truncated|unexpected end/i);
  const zs = await zstdCompress(good);
  await expectFormat(zs.subarray(0, zs.length >> 1), /corrupt or truncated|truncat|end/i);
  const zsBad = Buffer.from(zs);
  zsBad.fill(0xaa, 8, 40);
  await expectFormat(zsBad, /corrupt or truncated/);
  await expectFormat(new RawTar().pax([['path', 'x']]).entry({ name: 'weird', flag: 'S' }).end(), /"x": unsupported tar entry type/);
  const badPax = new RawTar().entry({ name: 'PaxHeaders/bad', flag: 'x' }, '99 SCHILY.xattr.user.a=b\n').entry({ name: 'p', flag: '0' }, 'p').end();
  await expectFormat(badPax, /malformed PAX record/);
  await expectFormat(new RawTar().pax([['mtime', 'soon']]).entry({ name: 'm', flag: '0' }, 'm').end(), /PAX mtime="soon" is not a number/);
});

test('a root that is not a directory, and whiteouts that name nothing, are refused clearly', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const a = await arena(t);
  await refused(a, [f('.wh.', '')], '.wh.', /whiteout names no file/);
  await refused(a, [f('./', '')], './', /names the root directory but is a file/);
  await assert.rejects(applyLayer(streamOf(await packTar([f('x')])), join(a.sentinel, 'f')), /not a directory/);
  await a.check();
});
