import type { ByteSource } from './types.ts';

/** A window [start, start+size) of another source, e.g. a tar member's payload. */
export class SliceSource implements ByteSource {
  readonly name: string;
  constructor(private readonly inner: ByteSource, private readonly start: number, readonly size: number,
    name?: string) {
    this.name = name ?? inner.name ?? 'slice';
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.size) return 0;
    const view = offset + dst.length > this.size ? dst.subarray(0, this.size - offset) : dst;
    return this.inner.read(view, this.start + offset);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
