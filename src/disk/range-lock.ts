/**
 * Mutual exclusion over sector ranges. A read-modify-write of a partial sector must not
 * interleave with another write to that sector, or one of the two would be silently undone.
 */
interface Held { start: number; end: number; done: Promise<void> }

export class RangeLock {
  private readonly held: Held[] = [];

  /** Waits until no held range overlaps [start, end), takes it, and returns its release. */
  async acquire(start: number, end: number): Promise<() => void> {
    for (;;) {
      const blocker = this.held.find((h) => h.start < end && start < h.end);
      if (!blocker) break;
      await blocker.done;
    }
    let release!: () => void;
    const done = new Promise<void>((r) => { release = r; });
    const entry: Held = { start, end, done };
    this.held.push(entry);
    return () => {
      const i = this.held.indexOf(entry);
      if (i >= 0) this.held.splice(i, 1);
      release();
    };
  }
}
