/**
 * Where images come from and go to during conversion: a registry repository or an OCI layout,
 * behind one small interface each (source: manifest, config, layer bytes; target: blobs and the
 * manifest), so the engine never branches on the kind.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { FileSource } from '../../io/file.ts';
import { RegistryClient, type RepositoryRef } from '../../registry/client.ts';
import { parseReference, referenceTarget, type ImageReference } from '../../registry/reference.ts';
import type { Descriptor, ImageManifest, Platform } from '../../registry/oci.ts';
import { isOciLayoutRef, OciLayout, parseOciLayoutRef } from '../oci-layout.ts';

export interface SourceManifest { mediaType: string; digest: string; json: ImageManifest }

/** A layer's bytes as a stream; `done` settles once the whole blob was read and its digest checked. */
export interface LayerStream {
  stream: Readable;
  done: Promise<void>;
  /** Stops reading (after a failed apply) without waiting for the rest of the blob. */
  abort(): void;
}

export interface ImageSource {
  readonly name: string;
  manifest(): Promise<SourceManifest>;
  readBlob(desc: Descriptor): Promise<Buffer>;
  openBlob(desc: Descriptor): LayerStream;
}

export interface ImageTarget {
  readonly name: string;
  /** Identifies where blobs live, for reuse records: `registry/repository` or `oci:DIR`. */
  readonly location: string;
  hasBlob(digest: string, size: number): Promise<boolean>;
  /** Makes a blob known at `from` (another location) present here without uploading; false if it cannot. */
  linkBlob(from: string, digest: string, size: number): Promise<boolean>;
  /** Uploads a local file; `hashedByCaller`: the digest was taken from this file after it was written. */
  putBlobFile(path: string, digest: string, size: number, opts?: { hashedByCaller?: boolean }): Promise<'uploaded' | 'existing'>;
  putBlobBytes(bytes: Uint8Array): Promise<string>;
  /** Fetches a blob into a local file (a reused layer needed as a lower). */
  fetchBlob(digest: string, size: number, path: string): Promise<void>;
  putManifest(bytes: Uint8Array, mediaType: string, digest: string): Promise<void>;
}

/**
 * Feeds a producer's chunks into a stream with backpressure. After `abort` or once the consumer
 * closed the stream (a tar reader may stop at the end-of-archive blocks), the rest is still
 * read (and hashed) but dropped, unless aborted.
 */
function bridge(produce: (write: (c: Uint8Array) => Promise<void>) => Promise<void>): LayerStream {
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  let aborted = false;
  const write = async (c: Uint8Array): Promise<void> => {
    if (aborted) throw new Error('layer read aborted');
    if (stream.destroyed || stream.writableEnded) return;
    if (!stream.write(c)) {
      await new Promise<void>((resolve) => {
        const done = () => { stream.off('drain', done).off('close', done); resolve(); };
        stream.on('drain', done).on('close', done);
      });
    }
  };
  const done = produce(write).then(() => { if (!stream.destroyed) stream.end(); }, (err: Error) => {
    stream.destroy(err);
    throw err;
  });
  done.catch(() => undefined); // observed by whoever awaits it; never unhandled
  return { stream, done, abort: () => { aborted = true; stream.destroy(); } };
}

class RegistrySource implements ImageSource {
  constructor(private readonly client: RegistryClient, private readonly ref: ImageReference, readonly name: string,
    private readonly platform: Platform | undefined) {}

  async manifest(): Promise<SourceManifest> {
    const r = await this.client.manifests.resolve(this.ref, referenceTarget(this.ref), this.platform);
    return { mediaType: r.manifest.mediaType, digest: r.manifest.digest, json: r.manifest.json };
  }

  readBlob(desc: Descriptor): Promise<Buffer> {
    return this.client.blobs.get(this.ref, desc.digest, desc.size);
  }

  openBlob(desc: Descriptor): LayerStream {
    return bridge(async (write) => { await this.client.blobs.download(this.ref, desc.digest, { write }, desc.size); });
  }
}

class LayoutSource implements ImageSource {
  constructor(private readonly layout: OciLayout, private readonly tag: string | undefined, readonly name: string,
    private readonly platform: Platform) {}

  async manifest(): Promise<SourceManifest> {
    const m = await this.layout.resolve(this.tag, this.platform);
    return { mediaType: m.mediaType, digest: m.digest, json: m.json };
  }

  readBlob(desc: Descriptor): Promise<Buffer> {
    return this.layout.readBlob(desc.digest, desc.size);
  }

  openBlob(desc: Descriptor): LayerStream {
    const file = this.layout.blobPath(desc.digest);
    return bridge(async (write) => {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
        const c = chunk as Buffer;
        hash.update(c);
        size += c.length;
        await write(c);
      }
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== desc.digest || size !== desc.size) {
        throw new Error(`${file}: layer blob has digest ${got} and ${size} bytes, the manifest says ${desc.digest} and ${desc.size}`);
      }
    });
  }
}

class RegistryTarget implements ImageTarget {
  readonly location: string;
  constructor(private readonly client: RegistryClient, private readonly ref: ImageReference, readonly name: string) {
    this.location = `${ref.registry}/${ref.repository}`;
  }

  async hasBlob(digest: string, size: number): Promise<boolean> {
    return (await this.client.blobs.head(this.ref, digest)) === size;
  }

  async linkBlob(from: string, digest: string, size: number): Promise<boolean> {
    const prefix = `${this.ref.registry}/`;
    if (!from.startsWith(prefix) || from === this.location) return false;
    if (!(await this.client.blobs.mount(this.ref, from.slice(prefix.length), digest))) return false;
    return this.hasBlob(digest, size);
  }

  async putBlobFile(path: string, digest: string, size: number): Promise<'uploaded' | 'existing'> {
    const src = await FileSource.open(path);
    try {
      if (src.size !== size) throw new Error(`${path}: is ${src.size} bytes, expected ${size}`);
      const r = await this.client.blobs.uploadFrom(this.ref, src, { digest });
      return r.how === 'uploaded' ? 'uploaded' : 'existing';
    } finally {
      await src.close();
    }
  }

  async putBlobBytes(bytes: Uint8Array): Promise<string> {
    return (await this.client.blobs.upload(this.ref, bytes)).digest;
  }

  async fetchBlob(digest: string, size: number, path: string): Promise<void> {
    const out = createWriteStream(path);
    try {
      await this.client.blobs.download(this.ref, digest, {
        write: (c) => (out.write(c) ? undefined : new Promise<void>((r) => out.once('drain', r))),
      }, size);
      out.end();
      await finished(out);
    } finally {
      out.destroy();
    }
  }

  async putManifest(bytes: Uint8Array, mediaType: string, digest: string): Promise<void> {
    await this.client.manifests.put(this.ref, this.ref.digest ?? this.ref.tag ?? digest, bytes, mediaType);
  }
}

class LayoutTarget implements ImageTarget {
  readonly location: string;
  constructor(private readonly layout: OciLayout, private readonly tag: string | undefined, readonly name: string) {
    this.location = `oci:${layout.dir}`;
  }

  hasBlob(digest: string, size: number): Promise<boolean> {
    return this.layout.init().then(() => this.layout.hasBlob(digest, size));
  }

  async linkBlob(from: string, digest: string, size: number): Promise<boolean> {
    if (!from.startsWith('oci:') || from === this.location) return false;
    const other = new OciLayout(from.slice(4));
    if (!(await other.hasBlob(digest, size))) return false;
    await this.putBlobFile(other.blobPath(digest), digest, size);
    return true;
  }

  async putBlobFile(path: string, digest: string, size: number, opts: { hashedByCaller?: boolean } = {}): Promise<'uploaded' | 'existing'> {
    await this.layout.init();
    if (await this.layout.hasBlob(digest, size)) return 'existing';
    await this.layout.putBlobFile(path, digest, size, opts);
    return 'uploaded';
  }

  async putBlobBytes(bytes: Uint8Array): Promise<string> {
    await this.layout.init();
    return this.layout.putBlobBytes(bytes);
  }

  async fetchBlob(digest: string, size: number, path: string): Promise<void> {
    const from = this.layout.blobPath(digest);
    const st = await stat(from);
    if (st.size !== size) throw new Error(`${from}: is ${st.size} bytes, expected ${size}`);
    const { copyFile } = await import('node:fs/promises');
    await copyFile(from, path);
  }

  async putManifest(bytes: Uint8Array, mediaType: string, digest: string): Promise<void> {
    await this.layout.init();
    await this.layout.putBlobBytes(bytes);
    await this.layout.addManifest({ mediaType, digest, size: bytes.length }, this.tag ?? 'latest');
  }
}

export interface StoreOptions { client: RegistryClient; platform?: Platform }

export function openSource(spec: string, opts: StoreOptions): ImageSource {
  if (isOciLayoutRef(spec)) {
    const { dir, tag } = parseOciLayoutRef(spec);
    return new LayoutSource(new OciLayout(dir), tag, spec, opts.platform ?? opts.client.platform);
  }
  return new RegistrySource(opts.client, parseReference(spec), spec, opts.platform);
}

export function openTarget(spec: string, opts: StoreOptions): ImageTarget {
  if (isOciLayoutRef(spec)) {
    const { dir, tag } = parseOciLayoutRef(spec);
    return new LayoutTarget(new OciLayout(dir), tag, spec);
  }
  const ref = parseReference(spec);
  if (ref.digest) throw new Error(`${spec}: the destination must be a tag, not a digest (the converted manifest has a new digest)`);
  return new RegistryTarget(opts.client, ref, spec);
}

export type { RepositoryRef };
