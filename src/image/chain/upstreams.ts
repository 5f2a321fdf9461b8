/** The upstreams a layer chain can start from. */
import { FileSource } from '../../io/file.ts';
import { HttpRangeSource } from '../../registry/blob-source.ts';
import type { RegistryClient, RepositoryRef } from '../../registry/client.ts';
import type { BlobRef, Upstream } from './layer.ts';

/** A local file (a layer file, an OCI layout blob). */
export function fileUpstream(path: string): Upstream {
  return { name: path, open: () => FileSource.open(path) };
}

/** A registry blob read by HTTP Range through a (shared) client. */
export function registryUpstream(client: RegistryClient, repo: RepositoryRef, blob: BlobRef): Upstream {
  const source = HttpRangeSource.fromDescriptor(client, repo, blob);
  return { name: source.name, open: () => source };
}
