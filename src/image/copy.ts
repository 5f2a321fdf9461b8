/**
 * `dadi image copy SRC DST`: an image copied between registries (or OCI layouts) byte for byte —
 * the manifest's exact bytes (so its digest is unchanged), every blob as stored (never
 * recompressed), the annotations untouched — which is what an overlaybd image needs and what
 * `skopeo copy` does not do by default (it gzips uncompressed layers and rewrites the manifest).
 * Blobs the destination has are skipped; within one registry they are mounted across
 * repositories instead of uploaded. An index is copied with every manifest it lists.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { FileSource } from '../io/file.ts';
import type { ByteSource } from '../io/types.ts';
import { HttpRangeSource } from '../registry/blob-source.ts';
import type { RegistryClient } from '../registry/client.ts';
import { isImageManifestType, isIndexType } from '../registry/media-types.ts';
import type { Descriptor, ImageIndex, ImageManifest } from '../registry/oci.ts';
import { parseReference, referenceTarget, type ImageReference } from '../registry/reference.ts';
import { isOciLayoutRef, OciLayout, parseOciLayoutRef } from './oci-layout.ts';

export interface RawManifest { mediaType: string; digest: string; bytes: Buffer; json: ImageManifest | ImageIndex }

/** One end of a copy: a registry repository or an OCI layout. */
interface Store {
  readonly name: string;
  manifest(target: string): Promise<RawManifest>;
  hasBlob(d: Descriptor): Promise<boolean>;
  openBlob(d: Descriptor): Promise<ByteSource>;
  /** Puts a blob; `from` is the source store (a same-registry source is mounted, not uploaded). */
  putBlob(d: Descriptor, from: Store): Promise<'existing' | 'mounted' | 'uploaded'>;
  /** `listed`: the image itself (a layout lists it in index.json), not a manifest of its index. */
  putManifest(m: RawManifest, tag: string | undefined, listed: boolean): Promise<void>;
}

class RegistryStore implements Store {
  constructor(private readonly client: RegistryClient, readonly ref: ImageReference) {}
  get name(): string { return `${this.ref.registry}/${this.ref.repository}`; }

  manifest(target: string): Promise<RawManifest> {
    return this.client.manifests.get(this.ref, target);
  }

  async hasBlob(d: Descriptor): Promise<boolean> {
    return (await this.client.blobs.head(this.ref, d.digest)) === d.size;
  }

  async openBlob(d: Descriptor): Promise<ByteSource> {
    return HttpRangeSource.fromDescriptor(this.client, this.ref, d);
  }

  async putBlob(d: Descriptor, from: Store): Promise<'existing' | 'mounted' | 'uploaded'> {
    const sameRegistry = from instanceof RegistryStore && from.ref.registry === this.ref.registry && from.ref.repository !== this.ref.repository;
    const src = await from.openBlob(d);
    try {
      // The destination registry checks the digest of what it receives.
      const r = await this.client.blobs.uploadFrom(this.ref, src, { digest: d.digest, ...(sameRegistry ? { mountFrom: (from as RegistryStore).ref.repository } : {}) });
      return r.how;
    } finally {
      await src.close();
    }
  }

  async putManifest(m: RawManifest, tag: string | undefined): Promise<void> {
    await this.client.manifests.put(this.ref, tag ?? m.digest, m.bytes, m.mediaType);
  }
}

class LayoutStore implements Store {
  private readonly layout: OciLayout;
  constructor(readonly dir: string) {
    this.layout = new OciLayout(dir);
  }
  get name(): string { return `oci:${this.dir}`; }

  async manifest(target: string): Promise<RawManifest> {
    const index = await this.layout.readIndex();
    const d = target.startsWith('sha256:') ? index.manifests.find((m) => m.digest === target) ?? { digest: target, mediaType: '', size: undefined }
      : index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === target);
    if (!d) throw new Error(`oci:${this.dir}: no image tagged ${JSON.stringify(target)}`);
    const bytes = await this.layout.readBlob(d.digest, d.size);
    const json = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
    return { mediaType: d.mediaType || json.mediaType || '', digest: d.digest, bytes, json };
  }

  hasBlob(d: Descriptor): Promise<boolean> {
    return this.layout.hasBlob(d.digest, d.size);
  }

  openBlob(d: Descriptor): Promise<ByteSource> {
    return FileSource.open(this.layout.blobPath(d.digest));
  }

  async putBlob(d: Descriptor, from: Store): Promise<'existing' | 'mounted' | 'uploaded'> {
    await this.layout.init();
    if (await this.hasBlob(d)) return 'existing';
    const src = await from.openBlob(d);
    const tmp = `${this.layout.blobPath(d.digest)}.${process.pid}.part`;
    try {
      const out = createWriteStream(tmp);
      const buf = new Uint8Array(4 << 20);
      for (let at = 0; at < src.size;) {
        const n = await src.read(buf, at);
        if (n === 0) throw new Error(`${from.name}: blob ${d.digest} ends at ${at} of ${src.size} bytes`);
        if (!out.write(buf.slice(0, n))) await new Promise<void>((r) => out.once('drain', () => r()));
        at += n;
      }
      await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
      // putBlobFile hashes what it links in, so a wrong blob never enters the layout.
      await this.layout.putBlobFile(tmp, d.digest, d.size);
    } finally {
      await src.close();
      await rm(tmp, { force: true });
    }
    return 'uploaded';
  }

  async putManifest(m: RawManifest, tag: string | undefined, listed: boolean): Promise<void> {
    await this.layout.init();
    const path = this.layout.blobPath(m.digest);
    const part = `${path}.${process.pid}.part`;
    await writeFile(part, m.bytes);
    await rename(part, path);
    if (listed) await this.layout.addManifest({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length }, tag);
  }
}

function openStore(spec: string, client: RegistryClient): { store: Store; target: string | undefined } {
  if (isOciLayoutRef(spec)) {
    const { dir, tag } = parseOciLayoutRef(spec);
    return { store: new LayoutStore(dir), target: tag };
  }
  const ref = parseReference(spec);
  return { store: new RegistryStore(client, ref), target: referenceTarget(ref) };
}

export type CopyEvent = { what: 'blob'; digest: string; size: number; how: 'existing' | 'mounted' | 'uploaded' } | { what: 'manifest'; digest: string; mediaType: string };

export interface CopySummary { src: string; dst: string; digest: string; blobs: number; uploadedBytes: number; mounted: number; existing: number }

/** Copies SRC to DST (see the module comment); the destination tag is DST's, else SRC's. */
export async function copyImage(src: string, dst: string, client: RegistryClient, onEvent: (e: CopyEvent) => void = () => {}): Promise<CopySummary> {
  const from = openStore(src, client);
  const to = openStore(dst, client);
  if (!from.target) throw new Error(`${src}: name the image to copy (a tag or digest)`);
  const tag = to.target && !to.target.startsWith('sha256:') ? to.target : from.target.startsWith('sha256:') ? undefined : from.target;
  const summary: CopySummary = { src, dst, digest: '', blobs: 0, uploadedBytes: 0, mounted: 0, existing: 0 };
  const copyBlob = async (d: Descriptor): Promise<void> => {
    const how = (await to.store.hasBlob(d)) ? 'existing' : await to.store.putBlob(d, from.store);
    summary.blobs++;
    if (how === 'uploaded') summary.uploadedBytes += d.size;
    else if (how === 'mounted') summary.mounted++;
    else summary.existing++;
    onEvent({ what: 'blob', digest: d.digest, size: d.size, how });
  };
  const copyManifest = async (m: RawManifest, withTag: string | undefined, listed: boolean): Promise<void> => {
    if (isIndexType(m.mediaType)) {
      for (const child of (m.json as ImageIndex).manifests) await copyManifest(await from.store.manifest(child.digest), undefined, false);
    } else if (isImageManifestType(m.mediaType)) {
      const json = m.json as ImageManifest;
      for (const d of [json.config, ...json.layers]) await copyBlob(d);
    } else {
      throw new Error(`${src}: ${m.digest} has media type ${m.mediaType}, neither an image manifest nor an index`);
    }
    await to.store.putManifest(m, withTag, listed);
    onEvent({ what: 'manifest', digest: m.digest, mediaType: m.mediaType });
  };
  const top = await from.store.manifest(from.target);
  await copyManifest(top, tag, true);
  summary.digest = top.digest;
  return summary;
}
