/**
 * The bytes received on a connection and not yet parsed: the socket's own chunks, queued without
 * copying. Readers take views when a message lies inside one chunk and copy only across chunks.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  /** Unconsumed bytes. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * The next n bytes, consumed: a view into the socket's chunk when they lie in one, else copied
   * into `into` (which must hold n bytes) or a fresh buffer.
   */
  take(n: number, into?: Buffer): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with ${this.length} queued`);
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.advance(n);
      return view;
    }
    const dst = into ?? Buffer.allocUnsafe(n);
    this.copyOut(dst, n);
    return dst.length === n ? dst : dst.subarray(0, n);
  }

  /** Whether the next n bytes lie inside one received chunk (so take(n) returns a view). */
  contiguous(n: number): boolean {
    const first = this.chunks[0];
    return first !== undefined && first.length - this.head >= n;
  }

  /** Copies the next n bytes into dst and consumes them. */
  copyOut(dst: Uint8Array, n: number, at = 0): void {
    let done = 0;
    while (done < n) {
      const chunk = this.chunks[0]!;
      const step = Math.min(n - done, chunk.length - this.head);
      dst.set(chunk.subarray(this.head, this.head + step), at + done);
      done += step;
      this.advance(step);
    }
  }

  /** Drops the next n bytes (or all that are queued, if fewer); returns how many were dropped. */
  skip(n: number): number {
    const drop = Math.min(n, this.length);
    let left = drop;
    while (left > 0) {
      const step = Math.min(left, this.chunks[0]!.length - this.head);
      this.advance(step);
      left -= step;
    }
    return drop;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }

  private advance(n: number): void {
    this.head += n;
    this.length -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
