/**
 * dadi images for the remote-attach tests: overlaybd layer blobs (vector files or generated
 * layers), a config whose diff_ids are the blob digests and an OCI manifest with the overlaybd
 * annotations (formats.md §7.9); pushed with our client, or written as an OCI layout for skopeo.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { commitToFile } from '../../../src/format/lsmt/commit-file.ts';
import { appendDigestTable } from '../../../src/format/tar/append-table.ts';
import type { DigestTableRef } from '../../../src/format/tar/digest-table.ts';
import { createWritableLayer } from '../../../src/format/lsmt/writable.ts';
import { openWritablePairReadOnly } from '../../../src/format/open-layer.ts';
import { FileSource } from '../../../src/io/file.ts';
import { overlaybdLayerAnnotations } from '../../../src/image/annotations.ts';
import { RegistryClient } from '../../../src/registry/client.ts';
import type { Credentials } from '../../../src/registry/credentials.ts';
import { sha256Digest } from '../../../src/registry/digest.ts';
import { MediaType } from '../../../src/registry/media-types.ts';
import type { Descriptor, ImageManifest } from '../../../src/registry/oci.ts';

export interface BlobFile { path: string; digest: string; size: number }

export interface ObdImage {
  layers: BlobFile[];
  descriptors: Descriptor[];
  config: Buffer;
  manifest: Buffer;
  manifestJson: ImageManifest;
  digest: string;
}

export async function blobFile(path: string): Promise<BlobFile> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return { path, digest: `sha256:${h.digest('hex')}`, size: (await stat(path)).size };
}

/**
 * An OCI image of overlaybd layers (bottom first); `plain: true` leaves the annotations out;
 * `tables[i]` adds layer i's verify-table annotation.
 */
export async function buildObdImage(paths: string[], opts: { plain?: boolean; extraLayers?: Descriptor[]; tables?: Array<DigestTableRef | undefined> } = {}): Promise<ObdImage> {
  const layers = await Promise.all(paths.map(blobFile));
  const descriptors: Descriptor[] = layers.map((l, i) => {
    const table = opts.tables?.[i];
    return {
      mediaType: MediaType.ociLayer, digest: l.digest, size: l.size,
      ...(opts.plain ? {} : { annotations: overlaybdLayerAnnotations(l.digest, l.size, table ? { verifyTable: table } : {}) }),
    };
  });
  descriptors.push(...(opts.extraLayers ?? []));
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: descriptors.map((d) => d.digest) },
  }));
  const manifestJson: ImageManifest = {
    schemaVersion: 2, mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256Digest(config), size: config.length },
    layers: descriptors,
  };
  const manifest = Buffer.from(JSON.stringify(manifestJson));
  return { layers, descriptors, config, manifest, manifestJson, digest: sha256Digest(manifest) };
}

/** Pushes the image with our client (blobs streamed from their files). */
export async function pushObdImage(registry: string, repository: string, tag: string, img: ObdImage,
  credentials?: Credentials): Promise<void> {
  const client = new RegistryClient({ insecure: true, ...(credentials ? { credentials } : {}) });
  try {
    const repo = { registry, repository };
    for (const l of img.layers) {
      const src = await FileSource.open(l.path);
      try {
        await client.blobs.uploadFrom(repo, src, { digest: l.digest });
      } finally {
        await src.close();
      }
    }
    await client.blobs.upload(repo, img.config);
    await client.manifests.put(repo, tag, img.manifest, MediaType.ociManifest);
  } finally {
    await client.close();
  }
}

/** Writes the image as an OCI layout tagged `tag` (what `skopeo copy oci:DIR:TAG` reads). */
export async function writeObdLayout(dir: string, tag: string, img: ObdImage): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const hex = (d: string): string => d.slice('sha256:'.length);
  for (const l of img.layers) await copyFile(l.path, join(blobs, hex(l.digest)));
  await writeFile(join(blobs, hex(sha256Digest(img.config))), img.config);
  await writeFile(join(blobs, hex(img.digest)), img.manifest);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.ociIndex,
    manifests: [{ mediaType: MediaType.ociManifest, digest: img.digest, size: img.manifest.length,
      annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
}

/**
 * A generated layer: `chunks` pieces of `chunkSize` random bytes written at scattered offsets of
 * a `virtualSize` disk, committed as ZFile (lz4, 4 KiB blocks, CRC) inside a tar, as the
 * convertor writes layers (`incompressible`: plain random data, so the blob stays as large as
 * the data). Returns the blob path and the disk offsets of the chunks, in writing order.
 */
export async function generateLayer(dir: string,
  opts: { chunks: number; chunkSize: number; virtualSize: number; seed?: number; incompressible?: boolean;
    /** Default lz4; 'none': a plain (uncompressed) LSMT layer in its tar. */
    compress?: 'lz4' | 'zstd' | 'none';
    /** Append the chunk digest table (as dadi convert does) and return its reference. */
    table?: boolean }):
Promise<{ path: string; offsets: number[]; table?: DigestTableRef }> {
  const data = join(dir, 'gen.data');
  const index = join(dir, 'gen.index');
  const out = join(dir, `gen-${opts.seed ?? 0}.tar.zlsmt`);
  const layer = await createWritableLayer(data, index, { virtualSize: opts.virtualSize });
  const slots = Math.floor(opts.virtualSize / opts.chunkSize);
  // A stride coprime with the slot count scatters the chunks over the whole disk.
  let stride = Math.floor(slots * 0.618) | 1;
  while (gcd(stride, slots) !== 1) stride += 2;
  const offsets: number[] = [];
  for (let i = 0; i < opts.chunks; i++) {
    const slot = (i * stride + (opts.seed ?? 0)) % slots;
    offsets.push(slot * opts.chunkSize);
    const buf = randomBytes(opts.chunkSize);
    // Every other 4 KiB run repeats, so lz4 has something to compress.
    if (!opts.incompressible) for (let p = 0; p + 8192 <= buf.length; p += 8192) buf.fill(buf[p]!, p, p + 4096);
    await layer.write(buf, slot * opts.chunkSize);
  }
  await layer.close();
  const ro = await openWritablePairReadOnly(await FileSource.open(data), await FileSource.open(index), data);
  try {
    const compress = opts.compress ?? 'lz4';
    await commitToFile({ index: ro.index, data: ro.data, virtualSize: ro.virtualSize }, out,
      { ...(compress === 'none' ? {} : { compress }), blockSize: 4096, tar: true });
  } finally {
    await ro.close();
  }
  await rm(data);
  await rm(index);
  if (opts.table) return { path: out, offsets, table: (await appendDigestTable(out)).table };
  return { path: out, offsets };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
