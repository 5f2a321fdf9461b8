/**
 * Where a snapshot's files live under the root (the overlaybd snapshotter's layout, formats.md
 * §7.2): `snapshots/<id>/fs` (overlayfs upper or lower dir; a layer file of a block snapshot),
 * `work` (overlayfs work dir), `block/` (device config, mount point, writable layer, the NBD
 * socket and nbdfuse files of an attached device).
 */
import { join } from 'node:path';

export class Layout {
  constructor(readonly root: string) {}
  get snapshotsDir(): string { return join(this.root, 'snapshots'); }
  get metadataDb(): string { return join(this.root, 'metadata.db'); }
  dir(id: number): string { return join(this.snapshotsDir, String(id)); }
  fs(id: number): string { return join(this.dir(id), 'fs'); }
  work(id: number): string { return join(this.dir(id), 'work'); }
  block(id: number): string { return join(this.dir(id), 'block'); }
  mountPoint(id: number): string { return join(this.block(id), 'mountpoint'); }
  deviceConfig(id: number): string { return join(this.block(id), 'config.v1.json'); }
  resultFile(id: number): string { return join(this.block(id), 'init-debug.log'); }
  writableData(id: number): string { return join(this.block(id), 'writable_data'); }
  writableIndex(id: number): string { return join(this.block(id), 'writable_index'); }
  commitFile(id: number): string { return join(this.fs(id), 'overlaybd.commit'); }
  sealedFile(id: number): string { return join(this.fs(id), 'overlaybd.sealed'); }
  imageRefFile(id: number): string { return join(this.dir(id), 'image_ref'); }
  /** Staging directories: created here, renamed to dir(id) inside the metadata transaction. */
  staging(tag: string): string { return join(this.snapshotsDir, `new-${tag}`); }
  removing(id: number): string { return join(this.snapshotsDir, `rm-${id}`); }
}
