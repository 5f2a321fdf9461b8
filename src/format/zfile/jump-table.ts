/**
 * The in-memory jump table (formats.md §3.6): where each compressed block starts. Kept compact,
 * as upstream does: one float64 base offset per group of 65536/block_size blocks plus a u16
 * delta per block from its group's base, so a 10 GiB image at 4 KiB blocks costs ~6.5 MB, not 21.
 */
import { FormatError } from '../../errors.ts';

export class JumpTable {
  private constructor(
    private readonly bases: Float64Array,
    private readonly deltas: Uint16Array,
    private readonly groupShift: number,
    readonly blockCount: number,
  ) {}

  /**
   * Builds the table from the on-disk u32 lengths. `dataStart` is where block 0 starts and
   * `dataEnd` the first byte blocks may not reach (the jump table's offset). `tableOffset` only
   * locates errors.
   */
  static build(lengths: Uint8Array, count: number, opts: {
    blockSize: number; verify: boolean; dataStart: number; dataEnd: number; maxStored: number;
    file: string; tableOffset: number;
  }): JumpTable {
    const groupSize = Math.max(1, Math.floor(65536 / opts.blockSize));
    const groupShift = Math.log2(groupSize) | 0;
    const bases = new Float64Array((count >>> groupShift) + 1);
    const deltas = new Uint16Array(count + 1);
    const dv = new DataView(lengths.buffer, lengths.byteOffset, lengths.byteLength);
    const minLen = opts.verify ? 5 : 1;
    let pos = opts.dataStart;
    let base = pos;
    for (let i = 0; i <= count; i++) {
      if ((i & (groupSize - 1)) === 0 || groupSize === 1) {
        base = pos;
        bases[i >>> groupShift] = pos;
      }
      const delta = pos - base;
      if (delta > 0xffff) {
        throw new FormatError(opts.file, opts.tableOffset + 4 * i,
          `jump table: block ${i} lies ${delta} bytes after its group start (limit 65535)`);
      }
      deltas[i] = delta;
      if (i === count) break;
      const len = dv.getUint32(4 * i, true);
      if (len < minLen || len > opts.maxStored) {
        throw new FormatError(opts.file, opts.tableOffset + 4 * i,
          `jump table: block ${i} has stored length ${len}, expected ${minLen}..${opts.maxStored}`);
      }
      pos += len;
      if (pos > opts.dataEnd) {
        throw new FormatError(opts.file, opts.tableOffset + 4 * i,
          `jump table: block ${i} ends at ${pos}, past the data end ${opts.dataEnd}`);
      }
    }
    return new JumpTable(bases, deltas, groupShift, count);
  }

  /** File offset where block `i` starts; `start(blockCount)` is where the last block ends. */
  start(i: number): number {
    return this.bases[i >>> this.groupShift]! + this.deltas[i]!;
  }
}
