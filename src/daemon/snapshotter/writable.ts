/**
 * Containers with a dadi writable disk instead of an overlay (rwMode `dir` or `dev`, from the
 * `containerd.io/snapshot/overlaybd.writable` label or the config; formats.md §7.5): the image's
 * layers plus a writable layer in `block/` form the container's own device, mounted read-write
 * and returned as a bind mount (`dir`) or returned as the block device itself (`dev`). With no
 * parent the disk is new: it gets an ext4 file system first. Commit seals the writable layer into
 * `fs/overlaybd.sealed`, which makes the snapshot a dadi layer that later containers stack on.
 */
import { mkdir } from 'node:fs/promises';
import type { RwMode } from '../config.ts';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import { DeviceBusyError, sealWritableLayer, type DeviceSpec } from './device.ts';
import { SnapshotError } from './errors.ts';
import { faultPoint } from './faults.ts';
import { mountsUsing } from './in-use.ts';
import { Label } from './labels.ts';
import type { SnapshotRow } from './metadata.ts';
import type { MountSpec } from './mounts.ts';
import type { SnapshotterCore } from './core.ts';
import { diskUsage } from './usage.ts';

const GiB = 2 ** 30;

export class WritableDisks {
  constructor(private readonly s: SnapshotterCore) {}

  /** The mode of a new active snapshot: the label wins; the config's applies to containers on dadi images. */
  modeFor(labels: Record<string, string>, parent: SnapshotRow | null): RwMode {
    const forced = labels[Label.writable];
    if (forced === 'dir' || forced === 'dev') return forced;
    if (forced === 'overlayfs' || this.s.config.rwMode === 'overlayfs' || labels[Label.targetRef] || !parent) return 'overlayfs';
    const plan = this.s.plan(parent.id);
    return plan.block && plan.dirs.length === 0 ? this.s.config.rwMode : 'overlayfs';
  }

  private spec(row: SnapshotRow, create?: { virtualSize: number }): () => DeviceSpec {
    return () => {
      const plan = this.s.plan(row.parentId);
      const mode = row.labels[Label.writable] as RwMode;
      return {
        name: `writable snapshot ${row.name}${plan.block ? ` on image ${plan.block.imageRef}` : ''}`,
        lowers: plan.block?.lowers ?? [],
        upper: { data: this.s.layout.writableData(row.id), index: this.s.layout.writableIndex(row.id), ...(create ? { create } : {}) },
        workDir: this.s.layout.block(row.id),
        ...(mode === 'dir' ? { mountPoint: this.s.layout.mountPoint(row.id) } : {}),
        mkfs: create !== undefined && row.parentId === null,
      };
    };
  }

  async prepare(key: string, parent: SnapshotRow | null, labels: Record<string, string>, mode: 'dir' | 'dev'): Promise<MountSpec[]> {
    const plan = this.s.plan(parent?.id ?? null);
    if (parent && (!plan.block || plan.dirs.length > 0)) {
      throw new SnapshotError('InvalidArgument', `rwMode ${mode}: parent ${JSON.stringify(parent.name)} is not a dadi layer; a writable disk stacks only on dadi layers`);
    }
    const vsizeGB = labels[Label.vsize] ? Number(labels[Label.vsize]) : this.s.config.defaultVsizeGB;
    if (!Number.isInteger(vsizeGB) || vsizeGB <= 0) throw new SnapshotError('InvalidArgument', `label ${Label.vsize} is ${JSON.stringify(labels[Label.vsize])}, not a size in GB`);
    const row = await this.s.insertWithDirs({ name: key, parentId: parent?.id ?? null, kind: 'active', labels: { ...labels, [Label.writable]: mode }, storage: 'writable' },
      false, (dir) => mkdir(`${dir}/block`, { recursive: true }).then(() => undefined));
    faultPoint('prepare:after-insert');
    try {
      const d = await this.s.devices.acquire(row.id, row.id, this.spec(row, { virtualSize: parent ? 0 : vsizeGB * GiB }));
      await this.s.writeConfig(row, { data: this.s.layout.writableData(row.id), index: this.s.layout.writableIndex(row.id) })
        .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'writing config.v1.json'));
      faultPoint('prepare:after-attach');
      return this.mountsFor(row, d);
    } catch (err) {
      await this.s.devices.release(row.id, row.id, { force: true }).catch(() => {});
      await this.s.remove(key).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'undoing a failed writable prepare'));
      if (err instanceof SnapshotError) throw err;
      throw new SnapshotError('Unavailable', `writable snapshot ${key}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async mounts(row: SnapshotRow): Promise<MountSpec[]> {
    return this.mountsFor(row, await this.s.devices.acquire(row.id, row.id, this.spec(row)));
  }

  private mountsFor(row: SnapshotRow, d: { device: string; fsType: string | undefined }): MountSpec[] {
    if (row.labels[Label.writable] === 'dir') return [{ type: 'bind', source: this.s.layout.mountPoint(row.id), options: ['rbind', 'rw'] }];
    return [{ type: d.fsType ?? 'ext4', source: d.device, options: ['rw', 'discard'] }];
  }

  /** Unmounts and detaches the disk; refused while a container still mounts it. */
  async detach(row: SnapshotRow): Promise<void> {
    const d = await this.s.devices.get(row.id)?.catch(() => undefined);
    const busy = await mountsUsing(this.s.layout.dir(row.id), d?.device, this.s.layout.mountPoint(row.id));
    if (busy) throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(row.name)} is in use: ${busy}`);
    try {
      await this.s.devices.release(row.id, row.id);
    } catch (err) {
      if (err instanceof DeviceBusyError) throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(row.name)} is in use: ${err.message}`);
      throw err;
    }
  }

  /** Commit (formats.md §7.5): detach, seal into fs/overlaybd.sealed, record it as a local dadi layer. */
  async commit(row: SnapshotRow, name: string, labels: Record<string, string>): Promise<void> {
    await this.detach(row);
    const sealed = this.s.layout.sealedFile(row.id);
    await sealWritableLayer(this.s.layout.writableData(row.id), this.s.layout.writableIndex(row.id), sealed);
    faultPoint('commit:after-seal');
    const usage = await diskUsage(this.s.layout.fs(row.id));
    const committed = this.s.db.commit(row.id, { name, labels: { ...labels, [Label.localCommitPath]: sealed }, storage: 'localBlock',
      usageSize: usage.size, usageInodes: usage.inodes });
    faultPoint('commit:after-db');
    await this.s.writeConfig(committed).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'writing config.v1.json'));
  }
}
