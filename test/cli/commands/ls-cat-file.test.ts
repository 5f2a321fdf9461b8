/**
 * `dadi ls` and `dadi cat-file` on a local layer (a writable pair read as a layer): listings plain,
 * long, recursive and JSON; files to stdout and to a file; extents; symlinks followed inside the
 * image; and clear errors for missing paths, non-directories and missing arguments. No privilege.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { mkfs } from '../../../src/fs/ext4/mkfs.ts';
import { Ext4Writer } from '../../../src/fs/ext4/writer.ts';
import { applyLayerTo } from '../../../src/image/apply/index.ts';
import { Ext4Target } from '../../../src/image/apply/ext4-target.ts';
import { openLocalImage, WRITABLE_DATA, WRITABLE_INDEX } from '../../../src/image/local.ts';
import { runDadi, tempDir } from '../../helpers/env.ts';
import { TEST_FS } from '../../fs/ext4/support.ts';
import { packTar, streamOf } from '../../image/apply/tar-build.ts';

const BIG = Buffer.alloc(300_000, 0x5a);

test('dadi ls and dadi cat-file read a layer without mounting it', async (t) => {
  const dir = await tempDir(t);
  const disk = await openLocalImage([], { writableDir: dir, size: 256 << 20 });
  try {
    await mkfs(disk, { size: disk.size, ...TEST_FS });
    const layer = await packTar([
      { name: 'etc', type: 'directory', mode: 0o755, mtime: new Date(1_600_000_000_000) },
      { name: 'etc/motd', mode: 0o644, uid: 7, gid: 8, data: 'hello from the layer\n' },
      { name: 'etc/big', mode: 0o600, data: BIG },
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { name: 'usr/lib/libx.so', mode: 0o755, data: 'ELF' },
      { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'bin/su', mode: 0o4755, data: 'su' },
    ]);
    await applyLayerTo(streamOf(layer), new Ext4Target(await Ext4Writer.open(disk, 'layer')));
    await disk.flush();
  } finally {
    await disk.close();
  }
  const image = `${join(dir, WRITABLE_DATA)},${join(dir, WRITABLE_INDEX)}`;

  const ls = await runDadi(['ls', image]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.equal(ls.stdout.toString(), 'bin\ndev\netc\nlib\nlost+found\nusr\n');
  const long = (await runDadi(['ls', '-l', image, '/etc'])).stdout.toString().split('\n');
  assert.match(long[0]!, /^-rw------- +1 +0 +0 +300000 .* big$/);
  assert.match(long[1]!, /^-rw-r--r-- +1 +7 +8 +21 .* motd$/);
  assert.match((await runDadi(['ls', '-l', image, '/bin/su'])).stdout.toString(), /^-rwsr-xr-x .* su\n$/);
  assert.match((await runDadi(['ls', '-l', image, '/dev'])).stdout.toString(), /^crw-rw-rw- +1 +0 +0 +1, 3 .* null\n$/);
  const rec = (await runDadi(['ls', '-R', image, '/usr'])).stdout.toString();
  assert.equal(rec, '/usr/lib\n/usr/lib/libx.so\n');
  const json = (await runDadi(['ls', '--json', image, '/'])).stdout.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(json.find((e) => e.name === 'lib'), { name: 'lib', path: '/lib', kind: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 7, nlink: 1,
    mtime: '2023-11-14T22:13:20.000000000Z', ino: (json.find((e) => e.name === 'lib') as { ino: number }).ino, target: 'usr/lib' });
  assert.equal((await runDadi(['ls', image, '/lib'])).stdout.toString(), 'libx.so\n', 'a symlinked directory is listed through the link');

  const cat = await runDadi(['cat-file', image, '/etc/motd']);
  assert.equal(cat.stdout.toString(), 'hello from the layer\n');
  assert.equal((await runDadi(['cat-file', image, '/lib/libx.so'])).stdout.toString(), 'ELF', 'symlinks are followed inside the image');
  const out = join(dir, 'big.out');
  assert.equal((await runDadi(['cat-file', image, '/etc/big', '-o', out])).code, 0);
  assert.ok((await readFile(out)).equals(BIG));
  const ext = (await runDadi(['cat-file', '--extents', image, '/etc/big'])).stdout.toString().trim().split('\n');
  assert.equal(ext.map((l) => Number(l.split(' ')[1])).reduce((a, b) => a + b, 0), BIG.length);

  const missing = await runDadi(['cat-file', image, '/etc/nope']);
  assert.deepEqual([missing.code, missing.stderr], [1, 'dadi: /etc/nope: no such file or directory\n']);
  const notDir = await runDadi(['ls', image, '/etc/motd/x']);
  assert.deepEqual([notDir.code, notDir.stderr], [1, 'dadi: /etc/motd/x: etc/motd is not a directory\n']);
  const isDir = await runDadi(['cat-file', image, '/etc']);
  assert.deepEqual([isDir.code, isDir.stderr], [1, 'dadi: /etc: is a directory\n']);
  const noPath = await runDadi(['cat-file', image]);
  assert.equal(noPath.code, 1);
  assert.match(noPath.stderr, /give the image \(or its layers\) and then a path inside it/);
});
