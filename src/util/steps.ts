/**
 * Wall time of the steps of one operation (an attach: open layers, start the NBD server,
 * nbdfuse, loop device, mount), for the log line that says where a slow start went. Steps that
 * run concurrently each record their own span, so the figures may add up to more than the total.
 */
export class StepTimes {
  private readonly started = performance.now();
  readonly ms: Record<string, number> = {};

  /** Times `fn` as step `name` (added to an earlier step of the same name). */
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.add(name, performance.now() - t);
    }
  }

  add(name: string, ms: number): void {
    this.ms[name] = (this.ms[name] ?? 0) + ms;
  }

  /** Milliseconds since this was made. */
  elapsed(): number {
    return performance.now() - this.started;
  }

  /** The steps rounded to whole milliseconds, plus the total so far. */
  rounded(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.ms)) out[k] = Math.round(v);
    out.total = Math.round(this.elapsed());
    return out;
  }
}
