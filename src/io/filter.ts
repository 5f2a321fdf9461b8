/**
 * The pass-through ByteSource: a filter extends it, overrides what it changes and inherits the
 * rest, as an nbdkit filter calls `next` for every callback it does not implement. Capabilities
 * are those of `next`, so a filter never hides one by accident; a filter that cannot keep one
 * (it transforms bytes and has no synchronous path, say) overrides `caps` to drop it.
 *
 * A filter that observes or changes reads overrides `read`, and `readSync` too when it keeps
 * that capability: both are reads (the shared conformance suite checks they agree).
 */
import type { ByteSource, PrefetchKind, SourceCaps } from './types.ts';

export class SourceFilter implements ByteSource {
  constructor(protected readonly next: ByteSource) {}

  get size(): number {
    return this.next.size;
  }

  get name(): string | undefined {
    return this.next.name;
  }

  get caps(): SourceCaps {
    return this.next.caps;
  }

  read(dst: Uint8Array, offset: number): Promise<number> {
    return this.next.read(dst, offset);
  }

  readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (!this.next.readSync) throw new Error(`${this.name ?? 'source'}: no synchronous reads (caps.readSync is false)`);
    return this.next.readSync(dst, dstOffset, length, position);
  }

  prefetch(offset: number, length: number, kind: PrefetchKind): Promise<void> {
    return this.next.prefetch ? this.next.prefetch(offset, length, kind) : Promise.resolve();
  }

  readProgressive(dst: Uint8Array, offset: number, onFilled: (n: number) => void): Promise<number> {
    if (!this.next.readProgressive) return Promise.reject(new Error(`${this.name ?? 'source'}: no progressive reads (caps.progressive is false)`));
    return this.next.readProgressive(dst, offset, onFilled);
  }

  close(): Promise<void> {
    return this.next.close();
  }
}

/** The same source under another name (errors then name what the user gave, e.g. `stdin`). */
export class NamedSource extends SourceFilter {
  constructor(next: ByteSource, private readonly label: string) {
    super(next);
  }

  override get name(): string {
    return this.label;
  }
}
