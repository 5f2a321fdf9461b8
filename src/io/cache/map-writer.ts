/**
 * Keeps a blob's presence map durable: changes are flushed shortly after they happen (one
 * flush per burst of fills, not per fill), always after the data they describe is synced, and
 * one flush at a time in order. A map that has not changed since it was last written is not
 * written (or synced) again.
 */
import type { FileHandle } from 'node:fs/promises';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import { persistPresence, type PresenceMap } from './presence.ts';

const FLUSH_DELAY_MS = 100;

export class MapWriter {
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** What the map file holds (the map when it was opened, then each persisted snapshot). */
  private persisted: Buffer;

  constructor(
    private readonly map: PresenceMap,
    private readonly mapFile: FileHandle,
    private readonly dataFile: FileHandle,
    private readonly label: { digest: string; mapPath: string },
    private readonly onError: (problem: string) => void,
  ) {
    this.persisted = map.encode();
  }

  /** A flush soon (coalescing the fills of the next few milliseconds). */
  schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  /** Persists the map now (after syncing the data it describes); failures are reported, not thrown. */
  flush(): Promise<void> {
    this.chain = this.chain.then(async () => {
      try {
        const snapshot = this.map.encode();
        // Unchanged since the last flush (a blob only read from the cache): no syncs at close.
        if (snapshot.equals(this.persisted)) return;
        await persistPresence(this.mapFile, this.dataFile, snapshot);
        this.persisted = snapshot;
      } catch (err) {
        this.onError(`persisting ${this.label.mapPath} failed: ${errorMessage(err)}`);
        log.warn({ digest: this.label.digest, err: errorMessage(err) }, 'cache map flush failed');
      }
    });
    return this.chain;
  }

  /** No more scheduled flushes; a last flush() is the caller's. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
