/**
 * The tree comparator other suites rely on must actually see each kind of difference; a
 * comparator that always matched would make every "same tree" assertion vacuous.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, lutimes, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setAttribute } from 'fs-xattr';
import { requireSystem, tempDir } from '../../helpers/env.ts';
import { diffTrees, walkTree } from '../../helpers/tree.ts';

async function build(dir: string, variant: Record<string, boolean> = {}): Promise<void> {
  await mkdir(join(dir, 'd'));
  await writeFile(join(dir, 'd/f'), variant.content ? 'diff\n' : 'same\n');
  await writeFile(join(dir, 'g'), 'g\n');
  await chown(join(dir, 'g'), variant.owner ? 7 : 0, 0);
  await chmod(join(dir, 'g'), variant.mode ? 0o4755 : 0o755);
  await setAttribute(join(dir, 'g'), 'user.k', variant.xattr ? 'v2' : 'v1');
  await symlink(variant.target ? 'elsewhere' : 'g', join(dir, 'l'));
  execFileSync('setfattr', ['-h', '-n', 'trusted.k', '-v', variant.linkXattr ? 'b' : 'a', join(dir, 'l')]);
  if (variant.hardlink) await link(join(dir, 'g'), join(dir, 'h'));
  else await writeFile(join(dir, 'h'), 'g\n');
  execFileSync('mknod', [join(dir, 'dev'), 'c', '1', variant.rdev ? '5' : '3']);
  if (variant.extra) await writeFile(join(dir, 'extra'), '');
  await lutimes(join(dir, 'l'), 1, variant.mtime ? 2 : 1);
  for (const p of ['d/f', 'g', 'h', 'dev', 'd']) await lutimes(join(dir, p), 1, 1);
  if (variant.extra) await lutimes(join(dir, 'extra'), 1, 1);
}

test('diffTrees reports every kind of difference and nothing else', async (t) => {
  if (!requireSystem(t, { root: true, commands: ['mknod', 'setfattr', 'getfattr'] })) return;
  const base = await tempDir(t);
  await mkdir(join(base, 'ref'));
  await build(join(base, 'ref'));
  const ref = await walkTree(join(base, 'ref'));
  assert.deepEqual([...ref.keys()], ['/d', '/d/f', '/dev', '/g', '/h', '/l']);
  assert.deepEqual(ref.get('/l')!.xattrs, { 'trusted.k': '61' });
  assert.deepEqual([ref.get('/dev')!.rdevMajor, ref.get('/dev')!.rdevMinor], [1, 3]);

  const cases: Array<[string, RegExp]> = [
    ['content', /^\/d\/f: sha256 is/], ['mode', /^\/g: mode is "4755", expected "755"/], ['owner', /^\/g: uid is 7, expected 0/],
    ['xattr', /^\/g: xattrs is/], ['target', /^\/l: target is "elsewhere"/], ['linkXattr', /^\/l: xattrs is/],
    ['hardlink', /^\/g: linkGroup is "\/g"/], ['rdev', /^\/dev: rdevMinor is 5, expected 3/], ['extra', /^\/extra: unexpected file/],
    ['mtime', /^\/l: mtimeNs is "2000000000"/],
  ];
  for (const [variant, want] of cases) {
    const dir = join(base, variant);
    await mkdir(dir);
    await build(dir, { [variant]: true });
    const diff = diffTrees(await walkTree(dir), ref);
    assert.ok(diff.length > 0 && diff.some((line) => want.test(line)), `${variant}: ${JSON.stringify(diff)}`);
    if (variant !== 'hardlink') assert.equal(diff.length, 1, `${variant}: only that difference: ${JSON.stringify(diff)}`);
  }
  const same = join(base, 'same');
  await mkdir(same);
  await build(same);
  assert.deepEqual(diffTrees(await walkTree(same), ref), []);
  assert.deepEqual(diffTrees(new Map(), ref).length, 6, 'missing paths are reported');
});
