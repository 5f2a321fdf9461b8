import type { ByteSource } from './types.ts';

/** Bytes held in memory as a ByteSource (tests, small generated blobs). */
export class MemorySource implements ByteSource {
  constructor(private readonly bytes: Uint8Array, readonly name = 'memory') {}
  get size(): number {
    return this.bytes.length;
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    if (offset >= this.bytes.length) return 0;
    const n = Math.min(dst.length, this.bytes.length - offset);
    dst.set(this.bytes.subarray(offset, offset + n));
    return n;
  }
  async close(): Promise<void> {}
}
