/**
 * What the snapshotter's parts (writable disks, crash recovery) need of the snapshotter itself:
 * the store, the layout, the device table, and the few operations they share. They depend on this
 * interface, which Snapshotter implements, so no file imports the one that imports it.
 */
import type { SnapshotterConfig } from '../config.ts';
import type { LowerLayer } from './device.ts';
import type { DeviceTable } from './devices.ts';
import type { Layout } from './layout.ts';
import type { MetadataStore, SnapshotRow } from './metadata.ts';
import type { MountSpec } from './mounts.ts';

/** Where a snapshot's lower directories come from: overlayfs dirs above the topmost dadi layer, and that layer's device. */
export interface LowerPlan { dirs: string[]; block?: { owner: SnapshotRow; lowers: LowerLayer[]; imageRef: string } }

export interface SnapshotterCore {
  readonly db: MetadataStore;
  readonly config: SnapshotterConfig;
  readonly layout: Layout;
  readonly devices: DeviceTable;
  plan(parentId: number | null): LowerPlan;
  attachChain(block: NonNullable<LowerPlan['block']>, user: number): Promise<void>;
  writeConfig(row: SnapshotRow, upper?: { data: string; index: string }): Promise<void>;
  insertWithDirs(s: Parameters<MetadataStore['insert']>[0], withWork: boolean, fill?: (dir: string) => Promise<void>): Promise<SnapshotRow>;
  mounts(key: string): Promise<MountSpec[]>;
  remove(key: string): Promise<void>;
}
