/**
 * OCI layouts: written by us and read by skopeo (and the reverse), tags via ref.name, nested
 * indexes with platform choice, and clear errors for a missing tag, a corrupt blob or bad JSON.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { OciLayout, parseOciLayoutRef } from '../../../src/image/oci-layout.ts';
import { sha256Digest } from '../../../src/registry/digest.ts';
import { MediaType } from '../../../src/registry/media-types.ts';
import { requireSystem, tempDir } from '../../helpers/env.ts';

const AMD64 = { os: 'linux', architecture: 'amd64' };

async function smallImage(layout: OciLayout, tag: string, marker: string): Promise<string> {
  const layer = gzipSync(Buffer.from(marker));
  const layerDigest = await layout.putBlobBytes(layer);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Digest(Buffer.from(marker))] } }));
  const configDigest = await layout.putBlobBytes(config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configDigest, size: config.length },
    layers: [{ mediaType: MediaType.ociLayerGzip, digest: layerDigest, size: layer.length }] }));
  const digest = await layout.putBlobBytes(manifest);
  await layout.addManifest({ mediaType: MediaType.ociManifest, digest, size: manifest.length }, tag);
  return digest;
}

test('oci:DIR[:TAG] parsing', () => {
  assert.deepEqual(parseOciLayoutRef('oci:/a/b:v1'), { dir: '/a/b', tag: 'v1' });
  assert.deepEqual(parseOciLayoutRef('oci:/a:b/c'), { dir: '/a:b/c' });
  assert.deepEqual(parseOciLayoutRef('oci:/x/y'), { dir: '/x/y' });
  assert.throws(() => parseOciLayoutRef('oci:/x/y:'), /empty tag/);
  assert.throws(() => parseOciLayoutRef('docker://x'), /not an OCI layout/);
});

test('tags, retagging, nested indexes with platform choice, and errors naming the file', async (t) => {
  const dir = await tempDir(t);
  const layout = new OciLayout(dir);
  await layout.init();
  const d1 = await smallImage(layout, 'one', 'first');
  const d2 = await smallImage(layout, 'two', 'second');
  assert.equal((await layout.resolve('one', AMD64)).digest, d1);
  assert.equal((await layout.resolve('two', AMD64)).digest, d2);
  await assert.rejects(layout.resolve(undefined, AMD64), /holds 2 entries/);
  await assert.rejects(layout.resolve('three', AMD64), /no image tagged "three" \(tags: one, two\)/);
  // Retagging replaces the entry rather than adding a second one.
  const d3 = await smallImage(layout, 'one', 'third');
  assert.equal((await layout.resolve('one', AMD64)).digest, d3);
  assert.equal((await layout.readIndex()).manifests.length, 2);

  // An index entry tagged "multi" whose arm64 and amd64 children are both images.
  const m = (d: string) => ({ mediaType: MediaType.ociManifest, digest: d, size: 0 });
  const sizeOf = async (d: string) => (await readFile(layout.blobPath(d))).length;
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [
    { ...m(d1), size: await sizeOf(d1), platform: { os: 'linux', architecture: 'arm64' } },
    { ...m(d2), size: await sizeOf(d2), platform: AMD64 },
  ] }));
  const indexDigest = await layout.putBlobBytes(index);
  await layout.addManifest({ mediaType: MediaType.ociIndex, digest: indexDigest, size: index.length }, 'multi');
  assert.equal((await layout.resolve('multi', AMD64)).digest, d2);
  assert.equal((await layout.resolve('multi', { os: 'linux', architecture: 'arm64' })).digest, d1);
  await assert.rejects(layout.resolve('multi', { os: 'linux', architecture: 's390x' }), /no manifest for platform linux\/s390x \(available: linux\/arm64, linux\/amd64\)/);

  // A damaged manifest blob is reported with its path, not parsed.
  await writeFile(layout.blobPath(d2), Buffer.from('{"schemaVersion":2}'.padEnd(await sizeOf(d2))));
  await assert.rejects(layout.resolve('two', AMD64), new RegExp(`${d2.slice(7)}: content has digest`));
  await writeFile(join(dir, 'index.json'), '{not json');
  await assert.rejects(layout.resolve('one', AMD64), /index.json: the index is not valid JSON/);
});

test('putBlobFile refuses a file that does not match its digest, and links the converter\'s own hashed output in without a second hash', async (t) => {
  const dir = await tempDir(t);
  const layout = new OciLayout(join(dir, 'layout'));
  await layout.init();
  const file = join(dir, 'blob');
  const bytes = Buffer.from('a committed layer blob');
  await writeFile(file, bytes);
  const digest = sha256Digest(bytes);
  const wrong = sha256Digest(Buffer.from('other bytes'));
  // Untrusted input is hashed: a wrong digest or size never enters the layout.
  await assert.rejects(layout.putBlobFile(file, wrong, bytes.length), /has digest sha256:[0-9a-f]{64} and \d+ bytes, expected/);
  assert.equal(await layout.hasBlob(wrong, bytes.length), false);
  // The caller's own hash: the same inode is linked in (its size still checked).
  await assert.rejects(layout.putBlobFile(file, digest, bytes.length + 1, { hashedByCaller: true }), /is 22 bytes, expected 23/);
  await layout.putBlobFile(file, digest, bytes.length, { hashedByCaller: true });
  assert.equal((await stat(layout.blobPath(digest))).ino, (await stat(file)).ino);
  assert.deepEqual(await readFile(layout.blobPath(digest)), bytes);
});

test('skopeo reads what we write, and we read what skopeo writes', async (t) => {
  if (!requireSystem(t, { commands: ['skopeo'] })) return;
  const dir = await tempDir(t);
  const ours = new OciLayout(join(dir, 'ours'));
  await ours.init();
  const digest = await smallImage(ours, 'v1', 'skopeo check');
  const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${ours.dir}:v1`], { encoding: 'utf8' })) as { layers: unknown[] };
  assert.equal(inspect.layers.length, 1);
  execFileSync('skopeo', ['copy', '-q', `oci:${ours.dir}:v1`, `oci:${join(dir, 'theirs')}:copied`]);
  const back = await new OciLayout(join(dir, 'theirs')).resolve('copied', AMD64);
  assert.equal(back.digest, digest, 'skopeo copied the manifest bytes unchanged');
  assert.equal(back.json.layers.length, 1);
});
