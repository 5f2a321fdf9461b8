/**
 * The tap every traced image chain carries over each layer's decoded data (the `layer` slot of
 * layerChainConfig): it tells whoever listens (a recorder, a replay's hit counter) about each
 * read the disk makes of a layer, as (layer index, offset, length) in the layer file's byte space
 * (formats.md §7.8: after tar and ZFile removal). With nobody listening it costs one branch per
 * read. It also keeps each layer's top source, through which a replay prefetches.
 */
import { SourceFilter } from '../../io/filter.ts';
import type { ByteSource } from '../../io/types.ts';
import type { ChainFilter } from '../chain/layer.ts';

/** A read of layer `layer` (0 = bottom) that succeeded. */
export type ReadListener = (layer: number, offset: number, length: number) => void;

class TapSource extends SourceFilter {
  constructor(next: ByteSource, private readonly layer: number, private readonly tap: TraceTap) {
    super(next);
  }

  override async read(dst: Uint8Array, offset: number): Promise<number> {
    const n = await this.next.read(dst, offset);
    if (n > 0) this.tap.emit(this.layer, offset, n);
    return n;
  }

  override readSync(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    const n = super.readSync(dst, dstOffset, length, position);
    if (n > 0) this.tap.emit(this.layer, position, n);
    return n;
  }
}

export class TraceTap {
  private readonly listeners = new Set<ReadListener>();
  /** The tapped source of each layer, by index, once its chain has opened. */
  readonly layers: Array<ByteSource | undefined>;
  private readonly taken: boolean[];

  /** `names`: the layer chain names, bottom first, as the chains are opened with. */
  constructor(private readonly names: readonly string[]) {
    this.layers = new Array(names.length).fill(undefined);
    this.taken = names.map(() => false);
  }

  /** The chain filter to put in the `layer` slot. */
  filter(): ChainFilter {
    return (next, ctx) => {
      // The same blob twice in one image has one name twice: either index reads the same bytes.
      const index = this.names.findIndex((n, i) => n === ctx.name && !this.taken[i]);
      if (index < 0) return next;
      this.taken[index] = true;
      const tapped = new TapSource(next, index, this);
      this.layers[index] = tapped;
      return tapped;
    };
  }

  listen(fn: ReadListener): () => void {
    this.listeners.add(fn);
    return () => { this.listeners.delete(fn); };
  }

  emit(layer: number, offset: number, length: number): void {
    if (this.listeners.size === 0) return;
    for (const fn of this.listeners) fn(layer, offset, length);
  }
}
