/**
 * Commits of converted layers, run one at a time behind the conversion: while layer N is
 * compressed, hashed and pushed, layer N+1 is already being applied on top of N's writable layer
 * (read as a lower as it is), so the two busiest stages overlap instead of taking turns. The
 * first failure stops the jobs queued after it and is thrown at the next check.
 */
export class BackgroundCommits {
  private tail: Promise<void> = Promise.resolve();
  private readonly jobs: Promise<void>[] = [];
  private failure: { err: unknown } | undefined;

  /** Runs `job` after every job queued before it. */
  add(job: () => Promise<void>): void {
    const p = this.tail.then(async () => {
      if (this.failure) return;
      try {
        await job();
      } catch (err) {
        this.failure ??= { err };
      }
    });
    this.tail = p;
    this.jobs.push(p);
  }

  /** Throws the first failure so far, if any. */
  check(): void {
    if (this.failure) throw this.failure.err;
  }

  /** Waits for every queued job, then throws the first failure, if any. */
  async drain(): Promise<void> {
    await Promise.all(this.jobs);
    this.check();
  }

  /** Waits for every queued job, whatever happened (before cleaning up their files). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.jobs);
  }
}
