/**
 * Manifests: fetch (verifying the bytes against the digest asked for or announced), HEAD, PUT,
 * DELETE, and choosing one platform's image manifest from an index or manifest list.
 */
import type { CallSpec, RegistrySession, RepositoryRef } from './session.ts';
import { checkDigest, digestOf, isDigest, sha256Digest } from './digest.ts';
import { RegistryError } from './errors.ts';
import { MANIFEST_ACCEPT, MediaType, isImageManifestType, isIndexType } from './media-types.ts';
import { manifestProblem, type Descriptor, type ImageIndex, type ImageManifest, type Platform } from './oci.ts';
import { header, readBytes } from './transport.ts';

/** Manifests are small; anything larger is refused rather than buffered. */
export const MAX_MANIFEST_BYTES = 4 << 20;

export interface FetchedManifest {
  mediaType: string;
  digest: string;
  /** The exact bytes: their digest is the manifest's identity. */
  bytes: Buffer;
  json: ImageManifest | ImageIndex;
}

export interface ManifestHead { digest: string; mediaType: string; size: number }

export interface ResolvedImage {
  manifest: FetchedManifest & { json: ImageManifest };
  /** The index it was chosen from, when the reference named one. */
  index?: FetchedManifest & { json: ImageIndex };
}

export class ManifestApi {
  constructor(private readonly client: RegistrySession) {}

  private spec(repo: RepositoryRef, method: string, target: string, extra: Partial<CallSpec> = {}): CallSpec {
    return { method, registry: repo.registry, repository: repo.repository,
      path: `/v2/${repo.repository}/manifests/${target}`, headers: { accept: MANIFEST_ACCEPT }, ok: [200], kind: 'manifest', ...extra };
  }

  /** Fetches a manifest by tag or digest and checks its bytes. */
  async get(repo: RepositoryRef, target: string): Promise<FetchedManifest> {
    const spec = this.spec(repo, 'GET', target);
    const url = this.client.url(repo.registry, spec.path);
    return this.client.call(spec, async (res) => {
      const bytes = await readBytes(res, MAX_MANIFEST_BYTES);
      const announced = header(res.headers, 'docker-content-digest');
      const expected = isDigest(target) ? target : announced && isDigest(announced) ? announced : undefined;
      const digest = expected ? digestOf(bytes, expected) : sha256Digest(bytes);
      if (expected && digest !== expected) {
        throw new RegistryError('GET', url, res.status, [], `manifest content has digest ${digest}, expected ${expected}`);
      }
      if (isDigest(target) && announced && isDigest(announced) && announced !== target) {
        throw new RegistryError('GET', url, res.status, [], `registry announced digest ${announced}, expected ${target}`);
      }
      let json: unknown;
      try {
        json = JSON.parse(bytes.toString('utf8'));
      } catch {
        throw new RegistryError('GET', url, res.status, [], 'manifest is not valid JSON');
      }
      const problem = manifestProblem(json);
      if (problem) throw new RegistryError('GET', url, res.status, [], `not an image manifest or index: ${problem}`);
      const mediaType = manifestMediaType(header(res.headers, 'content-type'), json as ImageManifest | ImageIndex);
      return { mediaType, digest, bytes, json: json as ImageManifest | ImageIndex };
    });
  }

  /** HEAD: the digest, media type and size, or undefined when the registry has no such manifest. */
  async head(repo: RepositoryRef, target: string): Promise<ManifestHead | undefined> {
    const spec = this.spec(repo, 'HEAD', target, { ok: [200, 404] });
    return this.client.call(spec, async (res) => {
      await res.body.dump();
      if (res.status === 404) return undefined;
      const digest = header(res.headers, 'docker-content-digest') ?? (isDigest(target) ? target : undefined);
      if (!digest) {
        throw new RegistryError('HEAD', this.client.url(repo.registry, spec.path), res.status, [], 'no Docker-Content-Digest header');
      }
      return { digest, mediaType: (header(res.headers, 'content-type') ?? '').split(';')[0]!.trim(),
        size: Number(header(res.headers, 'content-length') ?? NaN) };
    });
  }

  /** Uploads a manifest under a tag or its digest; returns its digest. */
  async put(repo: RepositoryRef, target: string, bytes: Uint8Array, mediaType: string): Promise<string> {
    const digest = sha256Digest(bytes);
    if (isDigest(target) && digestOf(bytes, target) !== target) {
      throw new RegistryError('PUT', this.client.url(repo.registry, `/v2/${repo.repository}/manifests/${target}`), 0, [],
        `manifest content has digest ${digest}, not the target ${target}`);
    }
    const spec = this.spec(repo, 'PUT', target, { headers: { 'content-type': mediaType }, body: bytes, push: true, ok: [200, 201, 202] });
    return this.client.call(spec, async (res) => {
      await res.body.dump();
      return header(res.headers, 'docker-content-digest') ?? digest;
    });
  }

  async delete(repo: RepositoryRef, digest: string): Promise<void> {
    checkDigest(digest);
    await this.client.call(this.spec(repo, 'DELETE', digest, { push: true, ok: [200, 202] }), (res) => res.body.dump());
  }

  /** Fetches the image manifest a reference names, choosing a platform when it names an index. */
  async resolve(repo: RepositoryRef, target: string, platform: Platform = this.client.platform): Promise<ResolvedImage> {
    const first = await this.get(repo, target);
    if (!isIndexType(first.mediaType)) {
      return { manifest: first as ResolvedImage['manifest'] };
    }
    const index = first as FetchedManifest & { json: ImageIndex };
    const chosen = selectPlatform(index.json.manifests, platform);
    if (!chosen) {
      const available = index.json.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '(no platform)')).join(', ');
      throw new RegistryError('GET', this.client.url(repo.registry, `/v2/${repo.repository}/manifests/${target}`), 200, [],
        `no manifest for platform ${formatPlatform(platform)} in the index (available: ${available || 'none'})`);
    }
    const manifest = await this.get(repo, chosen.digest);
    if (!isImageManifestType(manifest.mediaType)) {
      throw new RegistryError('GET', this.client.url(repo.registry, `/v2/${repo.repository}/manifests/${chosen.digest}`), 200, [],
        `index entry for ${formatPlatform(platform)} is a ${manifest.mediaType}, not an image manifest`);
    }
    return { manifest: manifest as ResolvedImage['manifest'], index };
  }
}

/** The media type from Content-Type, else the body's mediaType, else guessed from its shape. */
export function manifestMediaType(contentType: string | undefined, json: ImageManifest | ImageIndex): string {
  const ct = contentType?.split(';')[0]!.trim();
  if (ct && (isImageManifestType(ct) || isIndexType(ct))) return ct;
  if (typeof json.mediaType === 'string' && json.mediaType) return json.mediaType;
  return 'manifests' in json ? MediaType.ociIndex : MediaType.ociManifest;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Parses `os/arch[/variant]`. */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new Error(`invalid platform "${s}": expected os/arch[/variant]`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** Variants a platform implies when an index entry leaves them out (arm64 is v8 unless stated). */
function normalVariant(p: Platform): string | undefined {
  if (p.variant) return p.variant;
  if (p.architecture === 'arm64') return 'v8';
  return undefined;
}

/**
 * The index entry for `want`: same os and architecture, and the same variant when `want` names
 * one (a bare entry matches the default variant). Among candidates, an exact variant wins.
 */
export function selectPlatform(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const wantVariant = normalVariant(want);
  let fallback: Descriptor | undefined;
  for (const d of manifests) {
    const p = d.platform;
    if (!p || p.os !== want.os || p.architecture !== want.architecture) continue;
    const v = normalVariant(p);
    if (v === wantVariant) return d;
    if (wantVariant === undefined && fallback === undefined) fallback = d;
  }
  return fallback;
}
