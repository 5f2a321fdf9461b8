/**
 * The embedded registry's disk layout, content-addressed and crash-safe (every file lands by
 * atomic rename):
 *   ROOT/blobs/sha256/<2 hex>/<hex>                    blob and manifest bytes
 *   ROOT/uploads/<uuid>                                 upload sessions in progress
 *   ROOT/repositories/<name>/_tags/<tag>                digest the tag points to
 *   ROOT/repositories/<name>/_links/blobs/<hex>         the blob belongs to the repository
 *   ROOT/repositories/<name>/_links/manifests/<hex>     the manifest's media type
 * The `_` prefixes cannot collide with a nested repository (components start with [a-z0-9]), and
 * names and digests are validated by the router before they reach a path.
 *
 * Blob sizes (content-addressed, so immutable) and link contents are cached in memory: a ranged
 * read then costs one positional read. One server process owns a root at a time.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRepositoryName, isTag } from '../names.ts';

const SHA256 = /^sha256:([a-f0-9]{64})$/;

const MAX_CACHED = 100_000;

export class Storage {
  private readonly sizes = new Map<string, number>();
  private readonly links = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Creates the folders; upload sessions of an earlier process are unknown to this one, so their files go. */
  async init(): Promise<void> {
    for (const d of ['blobs/sha256', 'uploads', 'repositories']) await mkdir(join(this.root, d), { recursive: true });
    for (const f of await readdir(join(this.root, 'uploads'))) await rm(join(this.root, 'uploads', f), { force: true, recursive: true });
  }

  private hex(digest: string): string {
    const m = SHA256.exec(digest);
    if (!m) throw new Error(`not a sha256 digest: ${digest}`);
    return m[1]!;
  }

  private repoDir(name: string): string {
    if (!isRepositoryName(name)) throw new Error(`invalid repository name: ${name}`);
    return join(this.root, 'repositories', ...name.split('/'));
  }

  blobPath(digest: string): string {
    const hex = this.hex(digest);
    return join(this.root, 'blobs', 'sha256', hex.slice(0, 2), hex);
  }

  /** The blob's size, or undefined when it is not stored. */
  async blobSize(digest: string): Promise<number | undefined> {
    const cached = this.sizes.get(digest);
    if (cached !== undefined) return cached;
    try {
      const size = (await stat(this.blobPath(digest))).size;
      remember(this.sizes, digest, size);
      return size;
    } catch {
      return undefined;
    }
  }

  /** Moves a verified file into the store (a concurrent identical store is harmless). */
  async adoptBlob(file: string, digest: string): Promise<void> {
    const dst = this.blobPath(digest);
    await mkdir(join(dst, '..'), { recursive: true });
    await rename(file, dst);
  }

  async writeBlob(digest: string, data: Uint8Array): Promise<void> {
    const tmp = join(this.root, 'uploads', `put-${randomUUID()}`);
    await writeFile(tmp, data);
    await this.adoptBlob(tmp, digest);
  }

  readBlob(digest: string): Promise<Buffer> {
    return readFile(this.blobPath(digest));
  }

  // --- per-repository links and tags

  private linkPath(name: string, kind: 'blobs' | 'manifests', digest: string): string {
    return join(this.repoDir(name), '_links', kind, this.hex(digest));
  }

  async link(name: string, kind: 'blobs' | 'manifests', digest: string, content = ''): Promise<void> {
    const path = this.linkPath(name, kind, digest);
    await atomicWrite(path, content, join(this.root, 'uploads'));
    remember(this.links, path, content);
  }

  /** The link's content (a manifest's media type), or undefined when not linked. */
  async linked(name: string, kind: 'blobs' | 'manifests', digest: string): Promise<string | undefined> {
    const path = this.linkPath(name, kind, digest);
    const cached = this.links.get(path);
    if (cached !== undefined) return cached;
    try {
      const content = await readFile(path, 'utf8');
      remember(this.links, path, content);
      return content;
    } catch {
      return undefined;
    }
  }

  async unlink(name: string, kind: 'blobs' | 'manifests', digest: string): Promise<boolean> {
    const path = this.linkPath(name, kind, digest);
    this.links.delete(path);
    try {
      await rm(path);
      return true;
    } catch {
      return false;
    }
  }

  private tagPath(name: string, tag: string): string {
    if (!isTag(tag)) throw new Error(`invalid tag: ${tag}`);
    return join(this.repoDir(name), '_tags', tag);
  }

  async setTag(name: string, tag: string, digest: string): Promise<void> {
    await atomicWrite(this.tagPath(name, tag), digest, join(this.root, 'uploads'));
  }

  async getTag(name: string, tag: string): Promise<string | undefined> {
    try {
      const d = (await readFile(this.tagPath(name, tag), 'utf8')).trim();
      return SHA256.test(d) ? d : undefined;
    } catch {
      return undefined;
    }
  }

  async deleteTag(name: string, tag: string): Promise<boolean> {
    try {
      await rm(this.tagPath(name, tag));
      return true;
    } catch {
      return false;
    }
  }

  async tags(name: string): Promise<string[] | undefined> {
    try {
      return (await readdir(join(this.repoDir(name), '_tags'))).filter((t) => isTag(t)).sort();
    } catch {
      return (await this.repositoryExists(name)) ? [] : undefined;
    }
  }

  async repositoryExists(name: string): Promise<boolean> {
    try {
      return (await stat(join(this.repoDir(name), '_links'))).isDirectory();
    } catch {
      return false;
    }
  }

  /** Every repository with content, sorted. */
  async repositories(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, prefix: string[]): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue;
        if (e.name === '_links' && prefix.length > 0) out.push(prefix.join('/'));
        else if (!e.name.startsWith('_')) await walk(join(dir, e.name), [...prefix, e.name]);
      }
    };
    await walk(join(this.root, 'repositories'), []);
    return out.sort();
  }

  // --- uploads

  uploadPath(id: string): string {
    if (!/^[a-f0-9-]{36}$/.test(id)) throw new Error(`invalid upload id: ${id}`);
    return join(this.root, 'uploads', id);
  }

  async newUpload(): Promise<string> {
    const id = randomUUID();
    await writeFile(this.uploadPath(id), '');
    return id;
  }

  async uploadSize(id: string): Promise<number | undefined> {
    try {
      return (await stat(this.uploadPath(id))).size;
    } catch {
      return undefined;
    }
  }

  async removeUpload(id: string): Promise<void> {
    await rm(this.uploadPath(id), { force: true });
  }
}

/** Caches a fact, dropping everything when the cache gets large (a crude but bounded policy). */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_CACHED) map.clear();
  map.set(key, value);
}

/** sha256 of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Writes via a temporary file in the uploads folder, so a crash never leaves a half file or a stray name. */
async function atomicWrite(path: string, content: string, tmpDir: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const tmp = join(tmpDir, `meta-${randomUUID()}`);
  await writeFile(tmp, content);
  await rename(tmp, path);
}
