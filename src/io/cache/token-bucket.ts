/**
 * A token bucket for bandwidth limits: `take(n)` resolves when n bytes may be sent at `rate`
 * bytes per second, allowing a burst of `burst` bytes after idle time. A request larger than the
 * bucket is admitted by going into debt, so any chunk size works with any rate.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  private tokens: number;
  private last = performance.now();

  constructor(readonly rate: number, readonly burst: number) {
    if (!(rate > 0)) throw new RangeError(`token bucket rate must be positive, got ${rate}`);
    this.tokens = burst;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= n;
    if (this.tokens < 0) await sleep((-this.tokens / this.rate) * 1000, undefined, { signal });
  }
}
