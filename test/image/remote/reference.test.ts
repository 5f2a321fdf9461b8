/** Which serve/mount arguments are registry images and which are local files. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { isImageReference } from '../../../src/image/remote.ts';
import { tempDir, vector } from '../../helpers/env.ts';

test('isImageReference: references with a registry, tag or digest; existing and missing files are files', async (t) => {
  const digest = `sha256:${'a'.repeat(64)}`;
  for (const ref of ['127.0.0.1:5000/app:v1', 'localhost/app', 'registry.example.com/team/app', 'ubuntu:22.04',
    `team/app@${digest}`, 'host:5000/a/b', 'oci:/tmp/layout:v1', 'oci:layout']) {
    assert.equal(await isImageReference(ref), true, ref);
  }
  const dir = await tempDir(t);
  const odd = join(dir, 'looks:like-a-tag');
  await writeFile(odd, 'x');
  for (const file of [vector('A.lsmt'), odd, 'base.lsmt', 'dir/base.lsmt', 'layers.d/app.zlsmt', './app:v1', '/abs/app:v1',
    'config.v1.json', 'data,index', 'app', 'team/app', 'Bad Name:v1']) {
    assert.equal(await isImageReference(file), false, file);
  }
});
