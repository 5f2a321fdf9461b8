/**
 * Recognises sequential readers among interleaved ones: remembers where the last few streams
 * ended, and reports a read that starts exactly there as the continuation of that stream. A
 * stream counts as sequential from its second consecutive read on. Fixed-size typed arrays: no
 * allocation per read.
 */
export class SequentialDetector {
  private readonly ends: Float64Array;
  private readonly runs: Uint8Array;
  private next = 0;

  constructor(readonly streams = 4) {
    this.ends = new Float64Array(streams).fill(-1);
    this.runs = new Uint8Array(streams);
  }

  /**
   * Records a read of [offset, end). Returns the slot of the sequential stream it continues, or
   * -1 when it starts or continues no sequential stream yet. A new stream takes the oldest slot.
   */
  note(offset: number, end: number): number {
    for (let k = 0; k < this.ends.length; k++) {
      if (this.ends[k] === offset) {
        this.ends[k] = end;
        if (this.runs[k]! < 255) this.runs[k]!++;
        return this.runs[k]! >= 2 ? k : -1;
      }
    }
    const k = this.next++ % this.ends.length;
    this.ends[k] = end;
    this.runs[k] = 1;
    return -1;
  }
}
