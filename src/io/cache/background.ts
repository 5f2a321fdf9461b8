/**
 * Background download of one cached blob (overlaybd's bk_download): fill every missing unit in
 * order, in `chunk`-sized upstream reads, throttled by a token bucket, yielding to demand reads,
 * then verify sha256 of the whole local file and mark the blob complete.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import type { CachedSource } from './source.ts';
import { TokenBucket } from './token-bucket.ts';

export interface BackgroundDownloadOptions {
  /** Bandwidth limit in bytes per second; unlimited when absent or 0. */
  maxBytesPerSec?: number;
  /** Bytes per upstream request, rounded to whole refill units (default one refill unit). */
  chunk?: number;
  /** Attempts per chunk before giving up (default 5). */
  tries?: number;
  onDone?: (result: BackgroundResult) => void;
}

export interface BackgroundResult {
  digest: string;
  /** True when every unit is present and sha256 matched: the blob is complete. */
  ok: boolean;
  /** True when stopped by close()/stop() before finishing. */
  stopped: boolean;
  bytesFetched: number;
  seconds: number;
  error?: Error;
}

export class BackgroundDownload {
  readonly done: Promise<BackgroundResult>;
  finished = false;
  private readonly abort = new AbortController();

  constructor(private readonly src: CachedSource, private readonly opts: BackgroundDownloadOptions) {
    this.done = this.run().then((result) => {
      this.finished = true;
      try {
        opts.onDone?.(result);
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'background download onDone callback threw');
      }
      return result;
    });
  }

  /** Stops the download and waits until it has let go of the source. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  private async run(): Promise<BackgroundResult> {
    const started = performance.now();
    const src = this.src;
    const map = src.map;
    const signal = this.abort.signal;
    const unitsPerChunk = Math.max(1, Math.round((this.opts.chunk ?? map.unit) / map.unit));
    const tries = Math.max(1, this.opts.tries ?? 5);
    const rate = this.opts.maxBytesPerSec ?? 0;
    const bucket = rate > 0 ? new TokenBucket(rate, unitsPerChunk * map.unit) : undefined;
    let bytesFetched = 0;
    const result = (ok: boolean, error?: Error): BackgroundResult => ({
      digest: src.digest, ok, stopped: signal.aborted, bytesFetched, seconds: (performance.now() - started) / 1000,
      ...(error ? { error } : {}),
    });
    try {
      let u = 0;
      let failures = 0;
      while (u < map.units && !map.complete) {
        if (signal.aborted) return result(false);
        if (map.has(u)) { u++; continue; }
        const pending = src.inflightFor(u);
        if (pending) {
          await pending.catch(() => {});
          continue;
        }
        let count = 1;
        while (count < unitsPerChunk && u + count < map.units && !map.has(u + count) && !src.inflightFor(u + count)) count++;
        const len = Math.min(count * map.unit, src.size - u * map.unit);
        await bucket?.take(len, signal);
        await src.waitDemandIdle();
        if (signal.aborted) return result(false);
        // Demand reads may have filled or claimed units while this waited.
        if (map.has(u) || src.inflightFor(u)) continue;
        count = 1;
        while (count < unitsPerChunk && u + count < map.units && !map.has(u + count) && !src.inflightFor(u + count)) count++;
        try {
          const f = await src.fetchRun(u, count, 'background');
          bytesFetched += f.bytes.length;
          failures = 0;
          u += count;
        } catch (err) {
          if (++failures >= tries) throw err;
          log.warn({ digest: src.digest, unit: u, attempt: failures, err: errorMessage(err) }, 'background download retry');
          await sleep(Math.min(2000, 50 * 2 ** failures), undefined, { signal });
        }
      }
      if (!map.complete) await src.verifyAndComplete(signal);
      log.info({ digest: src.digest, bytesFetched }, 'background download complete and verified');
      return result(true);
    } catch (err) {
      if (signal.aborted) return result(false);
      const error = err instanceof Error ? err : new Error(String(err));
      log.error({ digest: src.digest, err: error.message }, 'background download failed');
      return result(false, error);
    }
  }
}
