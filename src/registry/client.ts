/**
 * The OCI distribution client: a registry session (connections, auth, counters, the one `call`
 * path) with the manifest and blob APIs built on it.
 */
import { BlobApi } from './blobs.ts';
import { RegistryError } from './errors.ts';
import { ManifestApi } from './manifests.ts';
import { RegistrySession, type RegistryClientOptions, type RepositoryRef } from './session.ts';
import { header, readText } from './transport.ts';

export { hostPlatform, RegistrySession, type CallSpec, type RegistryClientOptions, type RepositoryRef } from './session.ts';

export class RegistryClient extends RegistrySession {
  readonly manifests: ManifestApi;
  readonly blobs: BlobApi;

  constructor(opts: RegistryClientOptions = {}) {
    super(opts);
    this.manifests = new ManifestApi(this);
    this.blobs = new BlobApi(this);
  }

  /** Every tag of a repository, following `Link: <…>; rel="next"` pagination. */
  async listTags(repo: RepositoryRef): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repo.repository}/tags/list`;
    for (let page = 0; path && page < 1000; page++) {
      const current: string = path;
      const { next, body } = await this.call({ method: 'GET', registry: repo.registry, repository: repo.repository,
        path: current, ok: [200], kind: 'tags' }, async (res) => ({ next: nextLink(header(res.headers, 'link')), body: await readText(res, 16 << 20) }));
      let json: { tags?: unknown };
      try {
        json = JSON.parse(body) as typeof json;
      } catch {
        throw new RegistryError('GET', this.url(repo.registry, current), 200, [], 'tags list is not JSON');
      }
      if (Array.isArray(json.tags)) for (const t of json.tags) if (typeof t === 'string') tags.push(t);
      path = next;
    }
    return tags;
  }

}

function nextLink(link: string | undefined): string | undefined {
  const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  return m ? m[1] : undefined;
}

