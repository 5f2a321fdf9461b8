/**
 * Pushes the generated layers to a registry as an ordinary OCI image (gzip layers, a config whose
 * diff_ids are the uncompressed tars' digests), the kind of image users start from.
 */
import { RegistryClient } from '../registry/client.ts';
import { sha256Digest } from '../registry/digest.ts';
import { MediaType } from '../registry/media-types.ts';
import type { ImageManifest } from '../registry/oci.ts';
import { parseReference } from '../registry/reference.ts';
import type { DemoLayer } from './content.ts';

export interface PushedImage { reference: string; manifestDigest: string; bytes: number }

export async function pushOciImage(reference: string, layers: DemoLayer[]): Promise<PushedImage> {
  const ref = parseReference(reference);
  const client = new RegistryClient({ insecure: true });
  try {
    const descriptors = [];
    for (const l of layers) {
      const { digest, size } = await client.blobs.upload(ref, l.gzip);
      descriptors.push({ mediaType: MediaType.ociLayerGzip, digest, size });
    }
    const config = Buffer.from(JSON.stringify({
      architecture: client.platform.architecture, os: client.platform.os, created: '2024-01-01T00:00:00Z',
      config: { Cmd: ['/app/run.sh'], Env: ['PATH=/usr/bin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((l) => ({ created: '2024-01-01T00:00:00Z', created_by: `dadi demo: ${l.title}` })),
    }));
    const cfg = await client.blobs.upload(ref, config);
    const manifest: ImageManifest = {
      schemaVersion: 2, mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: cfg.digest, size: cfg.size },
      layers: descriptors,
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    await client.manifests.put(ref, ref.tag ?? 'latest', bytes, MediaType.ociManifest);
    return { reference, manifestDigest: sha256Digest(bytes), bytes: descriptors.reduce((n, d) => n + d.size, 0) };
  } finally {
    await client.close();
  }
}
