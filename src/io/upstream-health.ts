/**
 * Which upstreams (P2P peers, mirrors, the origin) failed recently. An upstream that failed or
 * was too slow is skipped for a cool-down period, so every read does not pay its timeout again;
 * after the period it gets one more chance. Shared by every blob that uses the same upstreams,
 * so a dead mirror found by one layer is skipped by all of them.
 */
export interface HealthOptions {
  /** How long a failed upstream is skipped (default 30 s). */
  coolDownMs?: number;
  /** The clock (tests, the simulation). */
  now?: () => number;
}

export interface HealthEvent { upstream: string; reason: string; until: number }

export class UpstreamHealth {
  private readonly downUntil = new Map<string, number>();
  private readonly reasons = new Map<string, string>();
  private readonly coolDownMs: number;
  private readonly now: () => number;
  /** Called when an upstream is marked down (logging, counters). */
  onDown?: (e: HealthEvent) => void;

  constructor(opts: HealthOptions = {}) {
    this.coolDownMs = opts.coolDownMs ?? 30_000;
    this.now = opts.now ?? Date.now;
  }

  isHealthy(upstream: string): boolean {
    const until = this.downUntil.get(upstream);
    if (until === undefined) return true;
    if (this.now() >= until) {
      this.downUntil.delete(upstream);
      this.reasons.delete(upstream);
      return true;
    }
    return false;
  }

  markDown(upstream: string, reason: string): void {
    const until = this.now() + this.coolDownMs;
    this.downUntil.set(upstream, until);
    this.reasons.set(upstream, reason);
    this.onDown?.({ upstream, reason, until });
  }

  markUp(upstream: string): void {
    this.downUntil.delete(upstream);
    this.reasons.delete(upstream);
  }

  /** Why an upstream is down, when it is. */
  reason(upstream: string): string | undefined {
    return this.isHealthy(upstream) ? undefined : this.reasons.get(upstream);
  }

  /** The upstreams now down (for stats and logs). */
  down(): string[] {
    return [...this.downUntil.keys()].filter((u) => !this.isHealthy(u));
  }
}
