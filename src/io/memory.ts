import type { ByteSource, SourceCaps } from './types.ts';

const MEMORY_CAPS: SourceCaps = Object.freeze({ readSync: true, prefetch: false, progressive: false });

/** Bytes held in memory as a ByteSource (tests, small generated blobs). */
export class MemorySource implements ByteSource {
  readonly caps = MEMORY_CAPS;
  constructor(private readonly bytes: Uint8Array, readonly name = 'memory') {}
  get size(): number {
    return this.bytes.length;
  }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    return this.readSync(dst, 0, dst.length, offset);
  }
  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (position >= this.bytes.length) return 0;
    const n = Math.min(length, this.bytes.length - position);
    dst.set(this.bytes.subarray(position, position + n), dstOffset);
    return n;
  }
  async close(): Promise<void> {}
}
