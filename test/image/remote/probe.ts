/**
 * The same image opened from its local layer files with every blob read recorded: what a read
 * of the disk needs from each blob (tar, ZFile and LSMT readers included). Tests compare it with
 * what the remote attach fetched from the registry, and use the bytes as the expected data.
 */
import { LayerStack } from '../../../src/disk/layer-stack.ts';
import { openLayerSource, type DetectedLayer } from '../../../src/format/open-layer.ts';
import { FileSource } from '../../../src/io/file.ts';
import { PLAIN_SOURCE, type ByteSource } from '../../../src/io/types.ts';

class RecordingSource implements ByteSource {
  readonly caps = PLAIN_SOURCE;
  readonly ranges: Array<[number, number]> = [];
  constructor(private readonly inner: ByteSource) {}
  get size(): number { return this.inner.size; }
  get name(): string | undefined { return this.inner.name; }
  async read(dst: Uint8Array, offset: number): Promise<number> {
    const n = await this.inner.read(dst, offset);
    if (n > 0) this.ranges.push([offset, offset + n]);
    return n;
  }
  close(): Promise<void> { return this.inner.close(); }
}

export interface LocalProbe {
  disk: LayerStack;
  /** Blob byte ranges each layer's file gave while the layers were opened (attach). */
  attachRanges: Array<Array<[number, number]>>;
  /** Reads [offset, offset+len) of the disk; returns the bytes and the blob ranges read per layer. */
  read(offset: number, len: number): Promise<{ bytes: Buffer; ranges: Array<Array<[number, number]>> }>;
  close(): Promise<void>;
}

export async function openLocalProbe(paths: string[]): Promise<LocalProbe> {
  const recorders: RecordingSource[] = [];
  const layers: DetectedLayer[] = [];
  for (const p of paths) {
    const rec = new RecordingSource(await FileSource.open(p));
    recorders.push(rec);
    layers.push(await openLayerSource(rec, p));
  }
  const attachRanges = recorders.map((r) => r.ranges.splice(0));
  const disk = await LayerStack.open({ lowers: layers });
  return {
    disk,
    attachRanges,
    async read(offset, len) {
      for (const r of recorders) r.ranges.length = 0;
      const bytes = Buffer.alloc(len);
      await disk.read(bytes, offset);
      return { bytes, ranges: recorders.map((r) => r.ranges.splice(0)) };
    },
    close: () => disk.close(),
  };
}

/** The refill units (of `unit` bytes) that byte ranges touch. */
export function unitsOf(ranges: Array<[number, number]>, unit: number): Set<number> {
  const out = new Set<number>();
  for (const [a, b] of ranges) for (let u = Math.floor(a / unit); u <= Math.floor((b - 1) / unit); u++) out.add(u);
  return out;
}
