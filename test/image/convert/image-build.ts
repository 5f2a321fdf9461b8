/**
 * Test images: layer tars (built with tar-stream or by hand) written as an OCI layout with a
 * tagged manifest and a config whose diff_ids are right, optionally gzip- or zstd-compressed.
 */
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { OciLayout } from '../../../src/image/oci-layout.ts';
import { sha256Digest } from '../../../src/registry/digest.ts';
import { MediaType } from '../../../src/registry/media-types.ts';

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface BuiltImage { manifestDigest: string; diffIds: string[]; layerDigests: string[]; layerSizes: number[]; config: Record<string, unknown> }

export async function writeOciImage(dir: string, tag: string, tars: Buffer[], compression: LayerCompression[] | LayerCompression = 'gzip',
  opts: { docker?: boolean } = {}): Promise<BuiltImage> {
  const layout = new OciLayout(dir);
  await layout.init();
  const diffIds: string[] = [];
  const layers = [];
  for (const [i, tar] of tars.entries()) {
    const c = Array.isArray(compression) ? compression[i]! : compression;
    const blob = c === 'gzip' ? gzipSync(tar) : c === 'zstd' ? Buffer.from(await zstdCompress(tar)) : tar;
    diffIds.push(sha256Digest(tar));
    const digest = await layout.putBlobBytes(blob);
    const mediaType = opts.docker ? (c === 'none' ? MediaType.dockerLayer : MediaType.dockerLayerGzip)
      : c === 'gzip' ? MediaType.ociLayerGzip : c === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
    layers.push({ mediaType, digest, size: blob.length });
  }
  const config = {
    architecture: 'amd64', os: 'linux', created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'], Labels: { 'test.label': 'kept' } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: tars.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = await layout.putBlobBytes(configBytes);
  const mediaType = opts.docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType,
    config: { mediaType: opts.docker ? MediaType.dockerConfig : MediaType.ociConfig, digest: configDigest, size: configBytes.length },
    layers }));
  const manifestDigest = await layout.putBlobBytes(manifest);
  await layout.addManifest({ mediaType, digest: manifestDigest, size: manifest.length }, tag);
  return { manifestDigest, diffIds, layerDigests: layers.map((l) => l.digest), layerSizes: layers.map((l) => l.size), config };
}
