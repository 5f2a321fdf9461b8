/**
 * Startup after any exit, clean or `kill -9`: the devices of the previous process died with it
 * (their NBD server was in-process), so everything it left in the kernel under the root is torn
 * down; directories without a metadata row (a crash between steps) are deleted; then the devices
 * that active snapshots need are attached again in the background, so existing containers'
 * mounts are served again and a Mounts call finds them ready (or waits for the same attach).
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import { cleanupStaleDevices } from './device.ts';
import type { SnapshotterCore } from './core.ts';

export class Recovery {
  constructor(private readonly s: SnapshotterCore) {}

  async run(): Promise<void> {
    const undone = await cleanupStaleDevices(this.s.layout.snapshotsDir);
    if (undone.length > 0) log.warn({ undone }, 'cleaned up devices left by an earlier daemon');
    const removed = await this.removeOrphanDirs(true);
    if (removed.length > 0) log.warn({ removed }, 'removed snapshot directories without metadata');
    this.reattach();
  }

  /**
   * Deletes snapshot directories no row owns. `staging` also deletes unfinished staging dirs,
   * which only startup may do (a running Prepare may be filling one).
   */
  async removeOrphanDirs(staging = false): Promise<string[]> {
    const dir = this.s.layout.snapshotsDir;
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const orphan = /^\d+$/.test(name) ? !this.s.db.getById(Number(name)) : name.startsWith('rm-') || (staging && name.startsWith('new-'));
      if (!orphan) continue;
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    }
    return removed;
  }

  private reattach(): void {
    for (const row of this.s.db.all()) {
      if (row.kind === 'committed') continue;
      const work = row.storage === 'writable' ? this.s.mounts(row.name) : (async () => {
        const plan = this.s.plan(row.parentId);
        if (plan.block) await this.s.attachChain(plan.block, row.id);
      })();
      work.catch((err: unknown) => log.warn({ snapshot: row.name, err: errorMessage(err) }, 're-attaching after restart failed; Mounts will retry'));
    }
  }
}
