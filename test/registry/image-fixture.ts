/**
 * Tiny, deterministic test images: tar layers made with tar-stream, a config and a manifest, plus
 * writing them as an OCI image layout (what skopeo reads with `oci:DIR:tag`).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { MediaType } from '../../src/registry/media-types.ts';
import { sha256Digest } from '../../src/registry/digest.ts';
import type { Descriptor, ImageManifest, Platform } from '../../src/registry/oci.ts';

/** A tar holding `files` (name → content), with fixed times so its digest is stable. */
export async function tarLayer(files: Record<string, Uint8Array | string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) {
    const data = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
    p.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Deterministic pseudo-random bytes (xorshift), so ranges have content worth comparing. */
export function pseudoRandom(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed | 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export interface TestImage {
  /** Layer blobs as stored in the registry (gzipped when built with gzip). */
  layers: Buffer[];
  config: Buffer;
  manifest: Buffer;
  manifestJson: ImageManifest;
  digest: string;
  mediaType: string;
}

export function descriptor(mediaType: string, data: Uint8Array, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: sha256Digest(data), size: data.length, ...extra };
}

/**
 * An image of the given tar layers (OCI by default, Docker schema 2 with docker: true; gzip: true
 * stores them compressed, which registries' clients such as skopeo pass through unchanged).
 */
export function buildImage(tars: Buffer[], opts: { docker?: boolean; platform?: Platform; label?: string; gzip?: boolean } = {}): TestImage {
  const layers = opts.gzip ? tars.map((l) => gzipSync(l)) : tars;
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const config = Buffer.from(JSON.stringify({
    architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Labels: { test: opts.label ?? 'dadi' } },
    rootfs: { type: 'layers', diff_ids: tars.map((l) => sha256Digest(l)) },
  }));
  const docker = opts.docker ?? false;
  const mediaType = docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifestJson: ImageManifest = {
    schemaVersion: 2,
    mediaType,
    config: descriptor(docker ? MediaType.dockerConfig : MediaType.ociConfig, config),
    layers: layers.map((l) => descriptor(opts.gzip ? (docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip)
      : docker ? MediaType.dockerLayer : MediaType.ociLayer, l)),
  };
  const manifest = Buffer.from(JSON.stringify(manifestJson));
  return { layers, config, manifest, manifestJson, digest: sha256Digest(manifest), mediaType };
}

/** A two-layer image with a few KiB of pseudo-random content. */
export async function sampleImage(seed = 1, opts: { docker?: boolean; platform?: Platform; gzip?: boolean } = {}): Promise<TestImage> {
  const l1 = await tarLayer({ 'etc/hello.txt': `hello ${seed}\n`, 'bin/data': pseudoRandom(5000 + seed, seed) });
  const l2 = await tarLayer({ 'usr/share/big': pseudoRandom(70_000, seed + 7) });
  return buildImage([l1, l2], { ...opts, label: `seed-${seed}` });
}

/** Writes an OCI image layout (oci-layout, index.json, blobs/sha256/*) with the image under `tag`. */
export async function writeOciLayout(dir: string, image: TestImage, tag: string): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  for (const data of [...image.layers, image.config, image.manifest]) {
    await writeFile(join(blobs, sha256Digest(data).slice('sha256:'.length)), data);
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [{ ...descriptor(image.mediaType, image.manifest), annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
}
