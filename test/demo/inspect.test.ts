/**
 * The demo's verdict on a mounted image must mean something: the generated layers applied into a
 * directory (with the project's tar applier, as the converter does) pass the check, and each
 * way an image can come out wrong — a whiteout not applied, a stale file, a lost file, a wrong
 * mode, a wrong link target, a hard link split in two — is named.
 */
import assert from 'node:assert/strict';
import { chmod, copyFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { applyLayer } from '../../src/image/apply/index.ts';
import { generateDemoContent, type DemoContent } from '../../src/demo/content.ts';
import { inspectMount } from '../../src/demo/inspect.ts';
import { requireSystem, tempDir } from '../helpers/env.ts';

async function extract(content: DemoContent, dir: string): Promise<void> {
  for (const l of content.layers) await applyLayer(Readable.from([l.gzip]), dir, { name: l.title });
}

test('the generated layers, applied, pass the demo check', async (t) => {
  // The applier sets owners (uid 0) as the converter does, which needs root.
  if (!requireSystem(t, { root: true })) return;
  const content = await generateDemoContent(64 * 1024);
  const dir = await tempDir(t);
  await extract(content, dir);
  const seen = await inspectMount(dir, content);
  assert.deepEqual(seen.problems, []);
  assert.equal(seen.contentMatches, true);
  assert.equal(seen.readPath, 'etc/motd');
  assert.equal(seen.firstLine, content.readContent.toString().split('\n')[0]);
  assert.deepEqual(seen.entries.filter((e) => !e.path.includes('/')).map((e) => e.path), ['app', 'etc', 'usr']);
  assert.ok(content.tree.has('usr/lib/libdemo.so') && !content.tree.has(content.whitedOut));
});

test('every kind of wrong tree is named', async (t) => {
  if (!requireSystem(t, { root: true })) return;
  const content = await generateDemoContent(64 * 1024);
  const dir = await tempDir(t);
  await extract(content, dir);
  const [a, b] = content.hardLink;
  await writeFile(join(dir, content.whitedOut), 'came back\n');
  const wrong = Buffer.from(content.readContent);
  wrong[0] ^= 1;
  await writeFile(join(dir, content.readPath), wrong);
  await unlink(join(dir, 'app/run.sh'));
  await chmod(join(dir, 'app/config.json'), 0o600);
  await unlink(join(dir, 'usr/lib/libdemo.so'));
  await symlink('elsewhere.so', join(dir, 'usr/lib/libdemo.so'));
  await copyFile(join(dir, a), join(dir, `${b}.tmp`));
  await rename(join(dir, `${b}.tmp`), join(dir, b));
  await rm(join(dir, 'app/data.bin'));
  await writeFile(join(dir, 'app/data.bin'), 'short');
  await chmod(join(dir, 'app/data.bin'), 0o644);

  const seen = await inspectMount(dir, content);
  assert.equal(seen.contentMatches, false);
  const expected = [
    `/${content.whitedOut} should not exist`,
    `/${content.readPath} differs from the generated content`,
    '/app/run.sh is missing',
    '/app/config.json has mode 600, expected 644',
    '/usr/lib/libdemo.so points to elsewhere.so, expected libdemo.so.1',
    `/${a} and /${b} are not one hard-linked inode`,
    '/app/data.bin has 5 bytes, expected 262144',
  ];
  for (const p of expected) assert.ok(seen.problems.some((x) => x.startsWith(p)), `"${p}" not in ${JSON.stringify(seen.problems, null, 1)}`);
  assert.equal(seen.problems.length, expected.length, JSON.stringify(seen.problems, null, 1));
});
