import type { ByteSource, PrefetchKind, SourceCaps } from './types.ts';

/** A window [start, start+size) of another source, e.g. a tar member's payload; it keeps the source's capabilities. */
export class SliceSource implements ByteSource {
  readonly name: string;
  constructor(private readonly inner: ByteSource, private readonly start: number, readonly size: number,
    name?: string) {
    this.name = name ?? inner.name ?? 'slice';
  }

  get caps(): SourceCaps {
    return this.inner.caps;
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size) return 0;
    const view = offset + dst.length > this.size ? dst.subarray(0, this.size - offset) : dst;
    return this.inner.read(view, this.start + offset);
  }

  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (position >= this.size) return 0;
    return this.inner.readSync!(dst, dstOffset, Math.min(length, this.size - position), this.start + position);
  }

  async readProgressive(dst: Uint8Array, offset: number, onFilled: (n: number) => void): Promise<number> {
    if (offset >= this.size) return 0;
    const view = offset + dst.length > this.size ? dst.subarray(0, this.size - offset) : dst;
    return this.inner.readProgressive!(view, this.start + offset, onFilled);
  }

  prefetch(offset: number, length: number, kind: PrefetchKind): Promise<void> {
    if (offset >= this.size || !this.inner.prefetch) return Promise.resolve();
    return this.inner.prefetch(this.start + offset, Math.min(length, this.size - offset), kind);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
