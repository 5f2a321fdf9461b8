/**
 * The background download of an attached image (overlaybd's bk_download): after a delay (the
 * reads of a container's start come first), fill each layer's cached blob completely, one layer
 * after another so the bandwidth limit holds for the image, each verified by its sha256.
 */
import { errorMessage } from '../../errors.ts';
import type { BackgroundResult } from '../../io/cache.ts';
import { log } from '../../util/log.ts';
import type { ChainLayer } from '../chain/layer.ts';

export interface BackgroundOptions {
  enable: boolean;
  /** Bandwidth limit for the whole image, bytes per second (0: unlimited). */
  maxBytesPerSec?: number;
  /** Wait this long after attach before starting (reads at start-up come first). */
  delayMs?: number;
}

export const DEFAULT_BACKGROUND: Required<BackgroundOptions> = { enable: true, maxBytesPerSec: 32 << 20, delayMs: 30_000 };

export class BackgroundFill {
  private downloads: Promise<BackgroundResult[]> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly opts: Required<BackgroundOptions>;

  constructor(private readonly layers: readonly ChainLayer[], opts: Partial<BackgroundOptions> = {}) {
    this.opts = { ...DEFAULT_BACKGROUND, ...opts };
    if (this.opts.enable && layers.some((l) => l.cached)) {
      this.timer = setTimeout(() => this.start(), this.opts.delayMs);
      this.timer.unref();
    }
  }

  /** Starts now instead of after the delay (no-op once started or stopped). */
  start(): void {
    if (this.downloads || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const rate = this.opts.maxBytesPerSec;
    this.downloads = (async () => {
      const results: BackgroundResult[] = [];
      for (const l of this.layers) {
        if (this.stopped || !l.cached || l.cached.complete) continue;
        results.push(await l.cached.startBackgroundDownload({ ...(rate ? { maxBytesPerSec: rate } : {}) }).done);
      }
      return results;
    })().catch((err) => {
      log.error({ err: errorMessage(err) }, 'background download failed');
      return [];
    });
  }

  /** Resolves when every layer's download has ended (never started: empty). */
  done(): Promise<BackgroundResult[]> {
    return this.downloads ?? Promise.resolve([]);
  }

  /** No new downloads; those running stop when their cached blob is closed. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
