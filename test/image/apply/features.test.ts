/**
 * Every entry type and metadata kind, checked directly and against GNU tar extracting the same
 * archive (the reference wherever the semantics coincide).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { getAttribute } from 'fs-xattr';
import { compress as zstdCompress } from 'zstd-napi';
import { applyLayer } from '../../../src/image/apply/index.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { devMajor, devMinor, diffTrees, walkTree } from '../../helpers/tree.ts';
import { referenceApply } from './reference.ts';
import { packTar, RawTar, streamOf, type PackEntry } from './tar-build.ts';

const T = (s: number) => new Date(s * 1000);
const SYSTEM = { root: true, commands: ['mknod', 'mkfifo', 'tar', 'getfattr', 'setfattr'] };

function pseudoRandom(n: number, seed: string): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}/${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

const LONG_DIR = `deep/${'d'.repeat(90)}/${'e'.repeat(90)}`;
const LONG_FILE = `${LONG_DIR}/${'f'.repeat(120)}`;
const LONG_TARGET = `../${'t'.repeat(150)}/${'u'.repeat(60)}`;

/** One layer holding every entry type and metadata kind tar-stream can express. */
function everyTypeEntries(): PackEntry[] {
  return [
    { name: 'd', type: 'directory', mode: 0o750, uid: 11, gid: 12, mtime: T(1_600_000_001) },
    { name: 'd/sticky', type: 'directory', mode: 0o1777, uid: 1234, gid: 5678, mtime: T(1_600_000_002) },
    { name: 'd/setuid', mode: 0o4755, data: '#!/bin/sh\n' },
    { name: 'd/setgid', mode: 0o2711, uid: 1000, gid: 1000, data: 'sgid\n' },
    { name: 'd/owned', mode: 0o640, uid: 4242, gid: 4343, mtime: T(1_500_000_000), data: 'owned\n' },
    { name: 'd/empty', mode: 0o600, data: '' },
    { name: 'd/big.bin', mode: 0o644, data: pseudoRandom(1 << 20, 'big') },
    { name: 'd/link', type: 'symlink', linkname: 'setuid', uid: 7, gid: 8, mtime: T(1_400_000_000) },
    { name: 'd/dangling', type: 'symlink', linkname: '/nowhere/at/all' },
    { name: 'other', type: 'directory', mode: 0o755, mtime: T(1_600_000_003) },
    { name: 'other/hl', type: 'link', linkname: 'd/owned' },
    { name: 'dev', type: 'directory', mode: 0o755, mtime: T(1_600_000_004) },
    { name: 'dev/null2', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
    { name: 'dev/blk', type: 'block-device', mode: 0o660, gid: 6, devmajor: 259, devminor: 65_537 },
    { name: 'dev/fifo', type: 'fifo', mode: 0o644, uid: 5, gid: 5 },
    { name: 'x', type: 'directory', mode: 0o755 },
    { name: 'x/attrs', mode: 0o644, data: 'xattrs\n', pax: { 'SCHILY.xattr.user.test': 'hello', 'SCHILY.xattr.user.other': 'v=1 2' } },
    { name: 'x/dir-attrs', type: 'directory', mode: 0o755, pax: { 'SCHILY.xattr.user.dir': 'on a dir' } },
    // PAX path (component too long for ustar) and PAX linkpath.
    { name: 'deep', type: 'directory', mode: 0o755 },
    { name: `deep/${'d'.repeat(90)}`, type: 'directory', mode: 0o755 },
    { name: LONG_DIR, type: 'directory', mode: 0o700 },
    { name: LONG_FILE, mode: 0o644, data: 'long name\n' },
    { name: `${LONG_DIR}/${'h'.repeat(110)}`, type: 'link', linkname: LONG_FILE },
    { name: 'x/long-symlink', type: 'symlink', linkname: LONG_TARGET },
    // Children added after their directory's entry: its mtime must still be the header's.
    { name: 'd/late-child', mode: 0o644, data: 'late\n' },
  ];
}

/** A scratch dir with empty `ours` (our applier's root) and `ref` (GNU tar's) beside each other. */
async function applyScratch(t: TestContext): Promise<{ scratch: string; ours: string; ref: string }> {
  const scratch = await tempDir(t);
  const ours = join(scratch, 'ours');
  const ref = join(scratch, 'ref');
  await Promise.all([mkdir(ours), mkdir(ref)]);
  return { scratch, ours, ref };
}

test('every entry type, mode, owner, time and xattr; same tree as GNU tar', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const { scratch, ours, ref } = await applyScratch(t);
  const layer = await packTar(everyTypeEntries());
  const stats = await applyLayer(streamOf(layer), ours);
  referenceApply(ref, [layer], scratch);

  assert.deepEqual(stats.entries, { 'file': 8, 'directory': 9, 'symlink': 3, 'hardlink': 2, 'character-device': 1, 'block-device': 1, 'fifo': 1 });
  assert.equal(stats.bytesWritten, (1 << 20) + '#!/bin/sh\nsgid\nowned\nxattrs\nlong name\nlate\n'.length);

  const mine = await walkTree(ours);
  const theirs = await walkTree(ref);
  // GNU tar sets a directory's times when extraction moves out of it, so x/long-symlink, which
  // comes back into x later, leaves x's mtime at "now" there; we set directory times at the end.
  assert.deepEqual(diffTrees(mine, theirs, { ignoreAt: { '/x': ['mtimeNs'] } }), []);
  assert.equal(mine.get('/x')!.mtimeNs, String(1_700_000_000n * 10n ** 9n));

  // Direct checks, so a shared mistake with the reference cannot hide.
  const n = (p: string) => mine.get(p)!;
  assert.equal(n('/d/setuid').mode, 0o4755);
  assert.equal(n('/d/setgid').mode, 0o2711);
  assert.equal(n('/d/setgid').uid, 1000);
  assert.equal(n('/d/sticky').mode, 0o1777);
  assert.deepEqual([n('/d/owned').uid, n('/d/owned').gid, n('/d/owned').mode], [4242, 4343, 0o640]);
  assert.equal(n('/d/owned').mtimeNs, String(1_500_000_000n * 10n ** 9n));
  assert.equal(n('/d').mtimeNs, String(1_600_000_001n * 10n ** 9n), 'directory mtime set after its children');
  assert.equal(n('/d').mode, 0o750);
  assert.deepEqual([n('/d/link').type, n('/d/link').target, n('/d/link').uid, n('/d/link').gid], ['symlink', 'setuid', 7, 8]);
  assert.equal(n('/d/link').mtimeNs, String(1_400_000_000n * 10n ** 9n));
  assert.equal(n('/other/hl').linkGroup, '/d/owned');
  assert.equal(n('/d/owned').linkGroup, '/d/owned');
  assert.equal(n('/d/setuid').linkGroup, undefined);
  const blk = await stat(join(ours, 'dev/blk'), { bigint: true });
  assert.ok(blk.isBlockDevice());
  assert.deepEqual([devMajor(blk.rdev), devMinor(blk.rdev)], [259, 65_537]);
  const chr = await stat(join(ours, 'dev/null2'), { bigint: true });
  assert.ok(chr.isCharacterDevice());
  assert.deepEqual([devMajor(chr.rdev), devMinor(chr.rdev)], [1, 3]);
  assert.equal(n('/dev/fifo').type, 'fifo');
  assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.test', join(ours, 'x/attrs')], { encoding: 'utf8' }), 'hello');
  assert.equal((await getAttribute(join(ours, 'x/attrs'), 'user.other')).toString(), 'v=1 2');
  assert.equal((await getAttribute(join(ours, 'x/dir-attrs'), 'user.dir')).toString(), 'on a dir');
  assert.equal(n(`/${LONG_FILE}`).sha256, createHash('sha256').update('long name\n').digest('hex'));
  assert.equal(n('/x/long-symlink').target, LONG_TARGET);
  assert.equal(n(`/${LONG_DIR}/${'h'.repeat(110)}`).linkGroup, n(`/${LONG_FILE}`).linkGroup);
  assert.equal(n('/d/big.bin').sha256, createHash('sha256').update(pseudoRandom(1 << 20, 'big')).digest('hex'));
});

// security.capability v2 granting every capability: the value holds 0xff bytes, which must not be
// mangled as text. user.bin holds NUL, newline and '=' too.
const CAPS = Buffer.from('0100000200000000ffffffff0000000000000000', 'hex');
CAPS.writeUInt32LE(0xffffffff, 4);
const BIN = Buffer.from([0x00, 0x80, 0xff, 0xfe, 0x0a, 0x3d, 0x20, 0x41]);
const GNU_LONG = `gnu/${'g'.repeat(140)}/${'n'.repeat(130)}`;
const GNU_TARGET = `/${'k'.repeat(200)}`;

function handBuiltLayer(): Buffer {
  return new RawTar()
    .entry({ name: 'bin/', flag: '5', mode: 0o755 })
    .pax([['SCHILY.xattr.security.capability', CAPS], ['SCHILY.xattr.user.bin', BIN]])
    .entry({ name: 'bin/ping', flag: '0', mode: 0o755 }, 'ping\n')
    // A symlink's own xattr (trusted.*, since user.* is not allowed on symlinks).
    .pax([['SCHILY.xattr.trusted.dadi', BIN]])
    .entry({ name: 'bin/sym', flag: '2', linkname: 'ping' })
    // PAX numbers beyond the ustar fields, and a fractional mtime.
    .pax([['uid', '3000000'], ['gid', '3000001'], ['mtime', '1700000000.5']])
    .entry({ name: 'bin/big-ids', flag: '0', mode: 0o644 }, 'ids\n')
    .entry({ name: 'gnu/', flag: '5', mode: 0o755, magic: 'gnu' })
    .entry({ name: `gnu/${'g'.repeat(140)}/`.slice(0, 99), flag: '5', mode: 0o755, magic: 'gnu' })
    .gnuLongName(`gnu/${'g'.repeat(140)}/`)
    .entry({ name: 'placeholder', flag: '5', mode: 0o711, magic: 'gnu' })
    .gnuLongName(GNU_LONG)
    .entry({ name: 'placeholder', flag: '0', mode: 0o644, magic: 'gnu' }, 'gnu long\n')
    .gnuLongName(`gnu/${'s'.repeat(120)}`)
    .gnuLongLink(GNU_TARGET)
    .entry({ name: 'placeholder', flag: '2', linkname: 'placeholder', magic: 'gnu' })
    .gnuLongName(`gnu/${'h'.repeat(120)}`)
    .gnuLongLink(GNU_LONG)
    .entry({ name: 'placeholder', flag: '1', linkname: 'placeholder', magic: 'gnu' })
    .end();
}

test('binary PAX xattrs (security.capability), PAX uid/gid/mtime, GNU ././@LongLink names; same tree as GNU tar', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const { scratch, ours, ref } = await applyScratch(t);
  const layer = handBuiltLayer();
  await applyLayer(streamOf(layer), ours);
  referenceApply(ref, [layer], scratch);
  const mine = await walkTree(ours);
  assert.deepEqual(diffTrees(mine, await walkTree(ref)), []);

  assert.deepEqual(await getAttribute(join(ours, 'bin/ping'), 'security.capability'), CAPS);
  assert.deepEqual(await getAttribute(join(ours, 'bin/ping'), 'user.bin'), BIN);
  const hex = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', join(ours, 'bin/ping')], { encoding: 'utf8' });
  assert.match(hex, new RegExp(`security.capability=0x${CAPS.toString('hex')}`));
  assert.deepEqual(mine.get('/bin/sym')!.xattrs, { 'trusted.dadi': BIN.toString('hex') });
  assert.deepEqual(mine.get('/bin/ping')!.xattrs, { 'security.capability': CAPS.toString('hex'), 'user.bin': BIN.toString('hex') }, 'the symlink xattr went on the link, not its target');
  const ids = mine.get('/bin/big-ids')!;
  assert.deepEqual([ids.uid, ids.gid, ids.mtimeNs], [3_000_000, 3_000_001, '1700000000500000000']);
  assert.equal(mine.get(`/${GNU_LONG}`)!.sha256, createHash('sha256').update('gnu long\n').digest('hex'));
  assert.equal(mine.get(`/gnu/${'g'.repeat(140)}`)!.mode, 0o711);
  assert.equal(mine.get(`/gnu/${'s'.repeat(120)}`)!.target, GNU_TARGET);
  assert.equal(mine.get(`/gnu/${'h'.repeat(120)}`)!.linkGroup, mine.get(`/${GNU_LONG}`)!.linkGroup);
  assert.ok(mine.get(`/${GNU_LONG}`)!.linkGroup);
});

test('gzip and zstd layers give the same tree as the plain tar, with progress in input bytes', async (t) => {
  if (!requireSystem(t, SYSTEM)) return;
  const scratch = await tempDir(t);
  const plain = await packTar(everyTypeEntries());
  const variants: Record<string, Buffer> = { plain, gzip: gzipSync(plain), zstd: await zstdCompress(plain) };
  const trees = [];
  for (const [kind, blob] of Object.entries(variants)) {
    const dir = join(scratch, kind);
    await mkdir(dir);
    let last = 0;
    let calls = 0;
    const stats = await applyLayer(streamOf(blob), dir, { onProgress: (b) => { assert.ok(b >= last); last = b; calls++; } });
    assert.equal(last, blob.length, `${kind}: progress reaches the blob size`);
    assert.ok(calls > 1, `${kind}: progress is reported along the way`);
    assert.equal(stats.bytesWritten, (1 << 20) + 43);
    trees.push(await walkTree(dir));
  }
  assert.deepEqual(diffTrees(trees[1]!, trees[0]!), []);
  assert.deepEqual(diffTrees(trees[2]!, trees[0]!), []);
  assert.ok(variants.zstd!.length < plain.length && variants.gzip!.length < plain.length);
});
