/**
 * Bounded background work. Finishing a file (owner, mode, times, close) takes several round trips
 * to libuv's thread pool; letting a few files finish while the next entries are read keeps the
 * pool busy instead of idle. Failures surface at the next check() or drain().
 */
export class Inflight {
  private readonly running = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(private readonly limit: number) {}

  /** Starts `job`, first waiting while `limit` jobs are running. */
  async add(job: () => Promise<void>): Promise<void> {
    this.check();
    while (this.running.size >= this.limit) await Promise.race(this.running);
    this.check();
    const p: Promise<void> = job()
      .catch((err: unknown) => { this.failure ??= err; })
      .finally(() => { this.running.delete(p); });
    this.running.add(p);
  }

  /** Throws the first failure of a background job, if any. */
  check(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Waits for every running job, then throws the first failure, if any. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
    this.check();
  }
}
