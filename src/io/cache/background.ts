/**
 * Background download of one cached blob (overlaybd's bk_download): fill every missing page in
 * order, in upstream reads of up to `chunk` bytes, throttled by a token bucket, yielding to demand reads,
 * then verify sha256 of the whole local file and mark the blob complete.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import type { PresenceMap } from './presence.ts';
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

/** What the download needs of the cached blob it fills (CachedSource). */
export interface FillTarget {
  readonly digest: string;
  readonly size: number;
  readonly map: PresenceMap;
  /** The fetch already bringing `page`, if any. */
  inflightFor(page: number): Promise<unknown> | undefined;
  /** Resolves once no demand read waits on the upstream. */
  waitDemandIdle(): Promise<void>;
  /** Fetches and stores `count` pages from `start`. */
  fetchRun(start: number, count: number, kind: 'background'): Promise<{ bytes: Uint8Array }>;
  /** sha256 of the whole local copy; marks the blob complete or discards it. */
  verifyAndComplete(signal?: AbortSignal): Promise<void>;
}

export class BackgroundDownload {
  readonly done: Promise<BackgroundResult>;
  finished = false;
  private readonly abort = new AbortController();

  constructor(private readonly src: FillTarget, private readonly opts: BackgroundDownloadOptions) {
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
    const pagesPerChunk = Math.max(1, Math.round((this.opts.chunk ?? map.unit) / map.unit)) * map.pagesPerUnit;
    const tries = Math.max(1, this.opts.tries ?? 5);
    const rate = this.opts.maxBytesPerSec ?? 0;
    const bucket = rate > 0 ? new TokenBucket(rate, pagesPerChunk * map.page) : undefined;
    let bytesFetched = 0;
    const result = (ok: boolean, error?: Error): BackgroundResult => ({
      digest: src.digest, ok, stopped: signal.aborted, bytesFetched, seconds: (performance.now() - started) / 1000,
      ...(error ? { error } : {}),
    });
    try {
      let p = 0;
      let failures = 0;
      const missingRun = (): number => {
        let count = 1;
        while (count < pagesPerChunk && p + count < map.pages && !map.hasPage(p + count) && !src.inflightFor(p + count)) count++;
        return count;
      };
      while (p < map.pages && !map.complete) {
        if (signal.aborted) return result(false);
        if (map.hasPage(p)) { p++; continue; }
        const pending = src.inflightFor(p);
        if (pending) {
          await pending.catch(() => {});
          continue;
        }
        const len = Math.min(missingRun() * map.page, src.size - p * map.page);
        await bucket?.take(len, signal);
        await src.waitDemandIdle();
        if (signal.aborted) return result(false);
        // Demand reads may have filled or claimed pages while this waited.
        if (map.hasPage(p) || src.inflightFor(p)) continue;
        const count = missingRun();
        try {
          const f = await src.fetchRun(p, count, 'background');
          bytesFetched += f.bytes.length;
          failures = 0;
          p += count;
        } catch (err) {
          if (++failures >= tries) throw err;
          log.warn({ digest: src.digest, offset: p * map.page, attempt: failures, err: errorMessage(err) }, 'background download retry');
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
