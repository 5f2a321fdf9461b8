/**
 * Reusable reply and payload buffers in power-of-two size classes, so the hot path (a 4 KiB read
 * at queue depth 32) recycles the same few buffers instead of allocating one per request. The
 * pool keeps at most `maxPooledBytes` idle; beyond that released buffers go to the GC.
 * Buffers from SHARED_CLASS up live in shared memory, so a ZFile layer's decode threads can
 * decompress a large read straight into the reply instead of into scratch that is then copied.
 */
const MIN_CLASS = 12; // 4 KiB
const SHARED_CLASS = 16; // 64 KiB

export class BufferPool {
  private readonly free: Buffer[][] = [];
  private pooledBytes = 0;

  constructor(private readonly maxPooledBytes = 64 * 1024 * 1024) {}

  /** A buffer of at least `size` bytes (its length is the size class); contents are garbage. */
  acquire(size: number): Buffer {
    const cls = sizeClass(size);
    const list = this.free[cls];
    const buf = list?.pop();
    if (buf !== undefined) {
      this.pooledBytes -= buf.length;
      return buf;
    }
    return cls >= SHARED_CLASS ? Buffer.from(new SharedArrayBuffer(2 ** cls)) : Buffer.allocUnsafeSlow(2 ** cls);
  }

  /** Returns a buffer from acquire(); the caller must no longer use it. */
  release(buf: Buffer): void {
    const cls = Math.log2(buf.length);
    if (!Number.isInteger(cls) || cls < MIN_CLASS) return;
    if (this.pooledBytes + buf.length > this.maxPooledBytes) return;
    (this.free[cls] ??= []).push(buf);
    this.pooledBytes += buf.length;
  }

  get idleBytes(): number {
    return this.pooledBytes;
  }
}

function sizeClass(size: number): number {
  return Math.max(MIN_CLASS, Math.ceil(Math.log2(Math.max(1, size))));
}

/** One pool per process: connections come and go, their buffers stay warm. */
export const sharedPool = new BufferPool();
