/**
 * A registry blob as a ByteSource: every read is one HTTP Range request through the registry
 * client (which authenticates, follows storage redirects, retries transient faults and checks the
 * answer's range and length). Reads are independent, so any number may run at once.
 */
import type { ByteSource, SourceCaps } from '../io/types.ts';

/** A registry blob reports its body's progress (a chunk checker hashes while the rest arrives). */
const HTTP_CAPS: SourceCaps = Object.freeze({ readSync: false, prefetch: false, progressive: true });
import type { RegistryClient, RepositoryRef } from './client.ts';

export class HttpRangeSource implements ByteSource {
  readonly name: string;
  readonly caps = HTTP_CAPS;

  /** `size` is the blob size from its descriptor; use `HttpRangeSource.open` to learn it by HEAD. */
  constructor(private readonly client: RegistryClient, private readonly repo: RepositoryRef,
    readonly digest: string, readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid blob size ${size} for ${digest}`);
    this.name = `${client.url(repo.registry, `/v2/${repo.repository}/blobs/${digest}`)}`;
  }

  /** A blob named by a manifest descriptor (digest and size). */
  static fromDescriptor(client: RegistryClient, repo: RepositoryRef, d: { digest: string; size: number }): HttpRangeSource {
    return new HttpRangeSource(client, repo, d.digest, d.size);
  }

  /** Opens a blob whose size is unknown, asking the registry (HEAD). */
  static async open(client: RegistryClient, repo: RepositoryRef, digest: string): Promise<HttpRangeSource> {
    return new HttpRangeSource(client, repo, digest, await client.blobs.size(repo, digest));
  }

  read(dst: Uint8Array, offset: number): Promise<number> {
    return this.readProgressive(dst, offset, undefined);
  }

  /** Reports the body's progress into `dst` as it arrives (a checker hashes whole chunks meanwhile). */
  async readProgressive(dst: Uint8Array, offset: number, onFilled: ((n: number) => void) | undefined): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`${this.name}: invalid offset ${offset}`);
    if (offset >= this.size || dst.length === 0) return 0;
    const n = Math.min(dst.length, this.size - offset);
    await this.client.blobs.readRange(this.repo, this.digest, offset, n === dst.length ? dst : dst.subarray(0, n), this.size, onFilled);
    return n;
  }

  /** The client is shared and owned by the caller; closing one blob leaves it open. */
  async close(): Promise<void> {}
}
