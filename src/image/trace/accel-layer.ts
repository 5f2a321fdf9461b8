/**
 * An image plus an acceleration layer (formats.md §7.8, what overlaybd's `ctr record-trace`
 * pushes): a Go-style tar holding the single file `trace`, appended last to the manifest with
 * the annotations `acceleration-layer: yes`, `version: 0.1.0`, `blob-digest`, `blob-size`,
 * `blob-fs-type`, one more diff_id (the tar is uncompressed, so its digest) and a history entry
 * "Acceleration Layer". An acceleration layer already on the image is replaced. The other layers
 * are mounted from the source repository (or copied when the registry refuses the mount).
 */
import { pack } from 'tar-stream';
import { Annotation, NATIVE_VERSION } from '../annotations.ts';
import type { RegistryClient } from '../../registry/client.ts';
import { sha256Digest } from '../../registry/digest.ts';
import { MediaType } from '../../registry/media-types.ts';
import type { Descriptor, ImageManifest } from '../../registry/oci.ts';

export interface ImageName { registry: string; repository: string; reference: string }

/** The tar of one regular file `trace`, as Go's archive/tar writes it. */
export async function traceLayerTar(trace: Uint8Array): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const ended = new Promise<void>((resolve, reject) => { p.on('end', resolve); p.on('error', reject); });
  p.entry({ name: 'trace', size: trace.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, Buffer.from(trace));
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Pushes `dst` = `src` + an acceleration layer holding `trace`; returns the new manifest's digest. */
export async function pushWithAccelerationLayer(client: RegistryClient, src: ImageName, dst: ImageName, trace: Uint8Array, fsType = 'ext4'): Promise<string> {
  const srcRepo = { registry: src.registry, repository: src.repository };
  const dstRepo = { registry: dst.registry, repository: dst.repository };
  const { manifest } = await client.manifests.resolve(srcRepo, src.reference);
  const json = manifest.json as ImageManifest;
  const config = JSON.parse((await client.blobs.get(srcRepo, json.config.digest)).toString('utf8')) as {
    rootfs: { diff_ids: string[] }; history?: Array<Record<string, unknown>>;
  };
  const keep = json.layers.filter((l) => l.annotations?.[Annotation.accelerationLayer] !== 'yes');
  if (keep.length !== json.layers.length) {
    config.rootfs.diff_ids = config.rootfs.diff_ids.slice(0, keep.length);
    config.history = (config.history ?? []).filter((h) => h.comment !== 'Acceleration Layer' && h.created_by !== 'Acceleration Layer');
  }
  const sameRepo = src.registry === dst.registry && src.repository === dst.repository;
  if (!sameRepo) {
    for (const l of keep) {
      if (await client.blobs.head(dstRepo, l.digest) !== undefined) continue;
      const bytes = await client.blobs.get(srcRepo, l.digest, l.size);
      await client.blobs.upload(dstRepo, bytes, src.registry === dst.registry ? { mountFrom: src.repository } : {});
    }
  }
  const tar = await traceLayerTar(trace);
  const digest = sha256Digest(tar);
  await client.blobs.upload(dstRepo, tar);
  const docker = manifest.mediaType === MediaType.dockerManifest;
  const layer: Descriptor = {
    mediaType: docker ? MediaType.dockerLayer : MediaType.ociLayer, digest, size: tar.length,
    annotations: {
      [Annotation.accelerationLayer]: 'yes', [Annotation.version]: NATIVE_VERSION,
      [Annotation.blobDigest]: digest, [Annotation.blobSize]: String(tar.length), [Annotation.fsType]: fsType,
    },
  };
  config.rootfs.diff_ids.push(digest);
  config.history = [...(config.history ?? []), { created: new Date().toISOString(), created_by: 'Acceleration Layer', comment: 'Acceleration Layer' }];
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256Digest(configBytes);
  await client.blobs.upload(dstRepo, configBytes);
  const out: ImageManifest = { ...json, config: { ...json.config, digest: configDigest, size: configBytes.length }, layers: [...keep, layer] };
  const bytes = Buffer.from(JSON.stringify(out));
  await client.manifests.put(dstRepo, dst.reference, bytes, manifest.mediaType);
  return sha256Digest(bytes);
}
