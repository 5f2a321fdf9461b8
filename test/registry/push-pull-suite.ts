/**
 * The client's behaviour against a registry, run against both the embedded registry and the
 * real docker-registry: push an image, pull it back, ranged reads, HEAD sizes, tags, mounts,
 * indexes with platform selection, and the errors a missing blob gives.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryClient } from '../../src/registry/client.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { MediaType } from '../../src/registry/media-types.ts';
import { sha256Digest } from '../../src/registry/digest.ts';
import { HttpRangeSource } from '../../src/registry/blob-source.ts';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileSource } from '../../src/io/file.ts';
import { tempDir } from '../helpers/env.ts';
import type { TestRegistry } from '../helpers/registry.ts';
import { buildImage, descriptor, pseudoRandom, sampleImage, tarLayer, type TestImage } from './image-fixture.ts';

export async function pushImage(client: RegistryClient, repo: { registry: string; repository: string }, image: TestImage,
  tag: string, chunkSize?: number): Promise<string> {
  for (const layer of image.layers) await client.blobs.upload(repo, layer, chunkSize ? { chunkSize } : {});
  await client.blobs.upload(repo, image.config);
  return client.manifests.put(repo, tag, image.manifest, image.mediaType);
}

export function pushPullSuite(label: string, start: (t: TestContext) => Promise<TestRegistry | undefined>): void {
  const setup = async (t: TestContext): Promise<{ reg: TestRegistry; client: RegistryClient } | undefined> => {
    const reg = await start(t);
    if (!reg) return undefined;
    const client = new RegistryClient({ timeoutMs: 10_000 });
    t.after(() => client.close());
    return { reg, client };
  };

  test(`${label}: push an image, pull manifest, config and layers back by tag and digest`, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const repo = { registry: s.reg.hostPort, repository: 'dadi/app' };
    const image = await sampleImage(1);
    const digest = await pushImage(s.client, repo, image, 'v1', 16 * 1024);
    assert.equal(digest, image.digest);

    for (const target of ['v1', image.digest]) {
      const m = await s.client.manifests.get(repo, target);
      assert.equal(m.digest, image.digest);
      assert.equal(m.mediaType, MediaType.ociManifest);
      assert.deepEqual(m.bytes, image.manifest);
    }
    const head = await s.client.manifests.head(repo, 'v1');
    assert.deepEqual(head, { digest: image.digest, mediaType: MediaType.ociManifest, size: image.manifest.length });
    assert.equal(await s.client.manifests.head(repo, 'nope'), undefined);

    const resolved = await s.client.manifests.resolve(repo, 'v1');
    assert.deepEqual(await s.client.blobs.get(repo, resolved.manifest.json.config.digest), image.config);
    for (const [i, d] of resolved.manifest.json.layers.entries()) {
      assert.equal(await s.client.blobs.head(repo, d.digest), image.layers[i]!.length);
      assert.deepEqual(await s.client.blobs.get(repo, d.digest, d.size), image.layers[i]);
    }
    const stats = s.client.stats.blob(image.layers[1]!.length > 0 ? sha256Digest(image.layers[1]!) : '');
    assert.equal(stats.bytes, image.layers[1]!.length);
    assert.equal(stats.requests, 1);
  });

  test(`${label}: ranged reads equal the slices; HttpRangeSource reads concurrently and stops at the end`, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const repo = { registry: s.reg.hostPort, repository: 'ranges' };
    const blob = pseudoRandom(100_003, 42);
    const { digest } = await s.client.blobs.upload(repo, blob);
    for (const [off, len] of [[0, 1], [0, 4096], [4095, 2], [99_999, 4], [100_002, 1], [0, 100_003], [12_345, 54_321]] as const) {
      const dst = new Uint8Array(len);
      await s.client.blobs.readRange(repo, digest, off, dst, blob.length);
      assert.deepEqual(Buffer.from(dst), blob.subarray(off, off + len), `range ${off}+${len}`);
    }
    await assert.rejects(s.client.blobs.readRange(repo, digest, 100_000, new Uint8Array(10), blob.length), /beyond the end/);

    const src = await HttpRangeSource.open(s.client, repo, digest);
    assert.equal(src.size, blob.length);
    const reads = Array.from({ length: 32 }, (_, i) => {
      const off = (i * 7919) % blob.length;
      const dst = new Uint8Array(3000);
      return src.read(dst, off).then((n) => ({ off, n, dst }));
    });
    for (const { off, n, dst } of await Promise.all(reads)) {
      assert.equal(n, Math.min(3000, blob.length - off));
      assert.deepEqual(Buffer.from(dst.subarray(0, n)), blob.subarray(off, off + n));
    }
    assert.equal(await src.read(new Uint8Array(10), blob.length), 0);
    const tail = new Uint8Array(100);
    assert.equal(await src.read(tail, blob.length - 10), 10);
    assert.deepEqual(Buffer.from(tail.subarray(0, 10)), blob.subarray(blob.length - 10));
  });

  test(`${label}: large-blob paths: upload from a file in chunks, streamed download`, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const repo = { registry: s.reg.hostPort, repository: 'big' };
    const data = pseudoRandom(300_007, 99);
    const file = join(await tempDir(t), 'blob');
    await writeFile(file, data);
    const src = await FileSource.open(file);
    t.after(() => src.close());
    const up = await s.client.blobs.uploadFrom(repo, src, { chunkSize: 64 * 1024 });
    assert.deepEqual(up, { digest: sha256Digest(data), size: data.length, how: 'uploaded' });
    assert.equal((await s.client.blobs.uploadFrom(repo, src)).how, 'existing');
    const chunks: Buffer[] = [];
    assert.equal(await s.client.blobs.download(repo, up.digest, { write: (c) => { chunks.push(Buffer.from(c)); } }, data.length), data.length);
    assert.deepEqual(Buffer.concat(chunks), data);
  });

  test(`${label}: tags list, cross-repo mount, missing blob errors`, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const repo = { registry: s.reg.hostPort, repository: 'team/one' };
    const image = await sampleImage(2);
    await pushImage(s.client, repo, image, 'a');
    await s.client.manifests.put(repo, 'b', image.manifest, image.mediaType);
    await s.client.manifests.put(repo, 'c', image.manifest, image.mediaType);
    assert.deepEqual((await s.client.listTags(repo)).sort(), ['a', 'b', 'c']);

    const other = { registry: s.reg.hostPort, repository: 'team/two' };
    const layer = sha256Digest(image.layers[0]!);
    assert.equal(await s.client.blobs.head(other, layer), undefined);
    assert.equal(await s.client.blobs.mount(other, 'team/one', layer), true);
    assert.equal(await s.client.blobs.head(other, layer), image.layers[0]!.length);
    const unknown = sha256Digest(Buffer.from('never pushed'));
    assert.equal(await s.client.blobs.mount(other, 'team/one', unknown), false);
    const r = await s.client.blobs.upload(other, image.layers[1]!, { mountFrom: 'team/one' });
    assert.equal(r.how, 'mounted');

    await assert.rejects(s.client.blobs.get(other, unknown), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'BLOB_UNKNOWN');
      assert.match(err.message, new RegExp(`^GET ${s.reg.url}/v2/team/two/blobs/${unknown}: 404 BLOB_UNKNOWN`));
      return true;
    });
    await assert.rejects(s.client.manifests.get(other, 'missing'), /404 MANIFEST_UNKNOWN/);
  });

  test(`${label}: an index picks the platform's manifest; Docker schema 2 round-trips`, async (t) => {
    const s = await setup(t);
    if (!s) return;
    const repo = { registry: s.reg.hostPort, repository: 'multi' };
    const layer = await tarLayer({ 'a.txt': 'shared layer' });
    const amd = buildImage([layer], { platform: { os: 'linux', architecture: 'amd64' } });
    const arm = buildImage([layer], { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    const arm7 = buildImage([layer], { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    for (const img of [amd, arm, arm7]) await pushImage(s.client, repo, img, img.digest);
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaType.ociIndex,
      manifests: [
        descriptor(MediaType.ociManifest, amd.manifest, { platform: { os: 'linux', architecture: 'amd64' } }),
        descriptor(MediaType.ociManifest, arm.manifest, { platform: { os: 'linux', architecture: 'arm64' } }),
        descriptor(MediaType.ociManifest, arm7.manifest, { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } }),
      ],
    }));
    await s.client.manifests.put(repo, 'latest', index, MediaType.ociIndex);
    const fetched = await s.client.manifests.get(repo, 'latest');
    assert.equal(fetched.mediaType, MediaType.ociIndex);
    assert.equal((await s.client.manifests.resolve(repo, 'latest', { os: 'linux', architecture: 'amd64' })).manifest.digest, amd.digest);
    assert.equal((await s.client.manifests.resolve(repo, 'latest', { os: 'linux', architecture: 'arm64', variant: 'v8' })).manifest.digest, arm.digest);
    assert.equal((await s.client.manifests.resolve(repo, 'latest', { os: 'linux', architecture: 'arm', variant: 'v7' })).manifest.digest, arm7.digest);
    await assert.rejects(s.client.manifests.resolve(repo, 'latest', { os: 'linux', architecture: 's390x' }),
      /no manifest for platform linux\/s390x.*available: linux\/amd64, linux\/arm64, linux\/arm\/v7/);

    const docker = await sampleImage(3, { docker: true });
    await pushImage(s.client, repo, docker, 'docker');
    const m = await s.client.manifests.get(repo, 'docker');
    assert.equal(m.mediaType, MediaType.dockerManifest);
    assert.equal(m.digest, docker.digest);
    const dockerArm = await sampleImage(4, { docker: true, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    await pushImage(s.client, repo, dockerArm, 'docker-arm');
    const list = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MediaType.dockerManifestList,
      manifests: [
        descriptor(MediaType.dockerManifest, docker.manifest, { platform: { os: 'linux', architecture: 'amd64' } }),
        descriptor(MediaType.dockerManifest, dockerArm.manifest, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      ],
    }));
    await s.client.manifests.put(repo, 'list', list, MediaType.dockerManifestList);
    const viaList = await s.client.manifests.resolve(repo, 'list', { os: 'linux', architecture: 'arm64' });
    assert.equal(viaList.index?.mediaType, MediaType.dockerManifestList);
    assert.equal(viaList.manifest.digest, dockerArm.digest);
    assert.equal(viaList.manifest.mediaType, MediaType.dockerManifest);
  });
}
