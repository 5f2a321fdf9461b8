/**
 * OCI image layouts (image-spec image-layout.md): a directory with `oci-layout`, `index.json` and
 * content-addressed `blobs/<alg>/<hex>`. Images are named by the `org.opencontainers.image.ref.name`
 * annotation of index.json entries (`oci:DIR:TAG`); an entry may itself be an index, from which one
 * platform's manifest is chosen as a registry pull would.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { checkDigest, isDigest, sha256Digest } from '../registry/digest.ts';
import { formatPlatform, manifestMediaType, selectPlatform } from '../registry/manifests.ts';
import { isImageManifestType, isIndexType, MediaType } from '../registry/media-types.ts';
import { manifestProblem, type Descriptor, type ImageIndex, type ImageManifest, type Platform } from '../registry/oci.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_FILE = 'oci-layout';
const LAYOUT_VERSION = '1.0.0';
/** index.json and manifests are small; refuse to buffer anything claiming to be larger. */
const MAX_JSON_BYTES = 4 << 20;

export interface OciLayoutRef { dir: string; tag?: string }

/** Whether `s` names an OCI layout (`oci:DIR[:TAG]`). */
export function isOciLayoutRef(s: string): boolean {
  return s.startsWith('oci:');
}

/** Parses `oci:DIR[:TAG]`; the tag is what follows the last ':' after the last '/'. */
export function parseOciLayoutRef(s: string): OciLayoutRef {
  if (!isOciLayoutRef(s)) throw new Error(`${s}: not an OCI layout reference (expected oci:DIR[:TAG])`);
  const rest = s.slice(4);
  const slash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', slash + 1);
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const tag = colon < 0 ? undefined : rest.slice(colon + 1);
  if (dir === '') throw new Error(`${s}: no directory in the OCI layout reference`);
  if (tag !== undefined && tag === '') throw new Error(`${s}: empty tag after ':'`);
  return { dir: resolve(dir), ...(tag !== undefined ? { tag } : {}) };
}

export function blobPath(dir: string, digest: string): string {
  checkDigest(digest);
  const i = digest.indexOf(':');
  return join(dir, 'blobs', digest.slice(0, i), digest.slice(i + 1));
}

async function readJson(file: string, what: string): Promise<{ bytes: Buffer; json: unknown }> {
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${file}: cannot read the ${what}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  if (st.size > MAX_JSON_BYTES) throw new Error(`${file}: the ${what} is ${st.size} bytes, more than the ${MAX_JSON_BYTES} allowed`);
  const bytes = await readFile(file);
  try {
    return { bytes, json: JSON.parse(bytes.toString('utf8')) };
  } catch {
    throw new Error(`${file}: the ${what} is not valid JSON`);
  }
}

export interface LayoutManifest {
  mediaType: string;
  digest: string;
  bytes: Buffer;
  json: ImageManifest;
}

/** An OCI layout directory, read and written in place. */
export class OciLayout {
  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    return blobPath(this.dir, digest);
  }

  async readIndex(): Promise<ImageIndex> {
    const file = join(this.dir, 'index.json');
    const { json } = await readJson(file, 'index');
    const problem = manifestProblem(json);
    if (problem || !Array.isArray((json as ImageIndex).manifests)) throw new Error(`${file}: not an image index: ${problem ?? 'no manifests array'}`);
    return json as ImageIndex;
  }

  /** Reads a blob fully and checks it against its digest (and size when given). */
  async readBlob(digest: string, size?: number): Promise<Buffer> {
    const file = this.blobPath(digest);
    const st = await stat(file).catch(() => undefined);
    if (!st) throw new Error(`${file}: blob ${digest} is missing from the layout`);
    if (size !== undefined && st.size !== size) throw new Error(`${file}: blob is ${st.size} bytes, the descriptor says ${size}`);
    if (st.size > MAX_JSON_BYTES) throw new Error(`${file}: ${st.size} bytes is too large to read whole`);
    const bytes = await readFile(file);
    if (sha256Digest(bytes) !== digest) throw new Error(`${file}: content has digest ${sha256Digest(bytes)}, expected ${digest}`);
    return bytes;
  }

  /**
   * The image manifest named by `tag` (or the only image in the layout when no tag is given),
   * choosing `platform` from an index entry.
   */
  async resolve(tag: string | undefined, platform: Platform): Promise<LayoutManifest> {
    const index = await this.readIndex();
    const where = join(this.dir, 'index.json');
    let chosen: Descriptor;
    if (tag !== undefined) {
      const hits = index.manifests.filter((d) => d.annotations?.[REF_NAME] === tag);
      if (hits.length === 0) {
        const tags = index.manifests.map((d) => d.annotations?.[REF_NAME]).filter((t) => t !== undefined);
        throw new Error(`${where}: no image tagged ${JSON.stringify(tag)} (tags: ${tags.join(', ') || 'none'})`);
      }
      if (hits.length > 1) throw new Error(`${where}: ${hits.length} entries are tagged ${JSON.stringify(tag)}`);
      chosen = hits[0]!;
    } else if (index.manifests.length === 1) {
      chosen = index.manifests[0]!;
    } else {
      throw new Error(`${where}: holds ${index.manifests.length} entries; name one with oci:${this.dir}:TAG`);
    }
    for (let depth = 0; ; depth++) {
      if (depth > 4) throw new Error(`${where}: indexes nested more than 4 deep`);
      const bytes = await this.readBlob(chosen.digest, chosen.size);
      let json: unknown;
      try { json = JSON.parse(bytes.toString('utf8')); } catch { throw new Error(`${this.blobPath(chosen.digest)}: not valid JSON`); }
      const problem = manifestProblem(json);
      if (problem) throw new Error(`${this.blobPath(chosen.digest)}: not an image manifest or index: ${problem}`);
      const mediaType = manifestMediaType(chosen.mediaType, json as ImageManifest | ImageIndex);
      if (isImageManifestType(mediaType)) return { mediaType, digest: chosen.digest, bytes, json: json as ImageManifest };
      if (!isIndexType(mediaType)) throw new Error(`${this.blobPath(chosen.digest)}: media type ${mediaType} is neither a manifest nor an index`);
      const list = (json as ImageIndex).manifests;
      const next = selectPlatform(list, platform);
      if (!next) {
        const available = list.map((d) => (d.platform ? formatPlatform(d.platform) : '(no platform)')).join(', ');
        throw new Error(`${this.blobPath(chosen.digest)}: no manifest for platform ${formatPlatform(platform)} (available: ${available || 'none'})`);
      }
      chosen = next;
    }
  }

  /** Creates the layout skeleton if absent (oci-layout, empty index.json, blobs/sha256). */
  async init(): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const layoutFile = join(this.dir, LAYOUT_FILE);
    if (!(await stat(layoutFile).catch(() => undefined))) {
      await writeFile(layoutFile, JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    }
    if (!(await stat(join(this.dir, 'index.json')).catch(() => undefined))) {
      await this.writeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] });
    }
  }

  private async writeIndex(index: ImageIndex): Promise<void> {
    const file = join(this.dir, 'index.json');
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(index, null, 2) + '\n');
    await rename(tmp, file);
  }

  async hasBlob(digest: string, size: number): Promise<boolean> {
    const st = await stat(this.blobPath(digest)).catch(() => undefined);
    return st?.isFile() === true && st.size === size;
  }

  async putBlobBytes(bytes: Uint8Array): Promise<string> {
    const digest = sha256Digest(bytes);
    if (await this.hasBlob(digest, bytes.length)) return digest;
    const file = this.blobPath(digest);
    await writeFile(`${file}.tmp`, bytes);
    await rename(`${file}.tmp`, file);
    return digest;
  }

  /**
   * Adds a file as a blob whose digest the caller computed; it is verified while copied (a
   * hard link is tried first, then checked by hashing the linked file). With `hashedByCaller`
   * the caller took the digest from this very file after writing it (the converter's own
   * output): a hard link is the same bytes, so only a copy is hashed again.
   */
  async putBlobFile(src: string, digest: string, size: number, opts: { hashedByCaller?: boolean } = {}): Promise<void> {
    if (!isDigest(digest)) throw new Error(`invalid digest ${digest}`);
    if (await this.hasBlob(digest, size)) return;
    const file = this.blobPath(digest);
    const tmp = `${file}.${process.pid}.tmp`;
    await rm(tmp, { force: true });
    const linked = await link(src, tmp).then(() => true, () => copyFile(src, tmp).then(() => false));
    if (linked && opts.hashedByCaller) {
      const st = await stat(tmp);
      if (st.size !== size) {
        await rm(tmp, { force: true });
        throw new Error(`${src}: is ${st.size} bytes, expected ${size}`);
      }
      await rename(tmp, file);
      return;
    }
    const hash = createHash('sha256');
    await pipeline(createReadStream(tmp), hash);
    const got = `sha256:${hash.digest('hex')}`;
    const st = await stat(tmp);
    if (got !== digest || st.size !== size) {
      await rm(tmp, { force: true });
      throw new Error(`${src}: has digest ${got} and ${st.size} bytes, expected ${digest} and ${size}`);
    }
    await rename(tmp, file);
  }

  /** Records a manifest in index.json; with a tag, replaces the entry that had it. */
  async addManifest(desc: Descriptor, tag?: string): Promise<void> {
    const index = await this.readIndex();
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size,
      ...(tag !== undefined ? { annotations: { ...desc.annotations, [REF_NAME]: tag } } : desc.annotations ? { annotations: desc.annotations } : {}) };
    const kept = index.manifests.filter((d) => (tag !== undefined ? d.annotations?.[REF_NAME] !== tag : d.digest !== desc.digest));
    await this.writeIndex({ ...index, manifests: [...kept, entry] });
  }
}
