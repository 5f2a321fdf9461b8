/**
 * The snapshotter: containerd's ten snapshot operations over the metadata store, the snapshot
 * directories and the attached devices. Three kinds of layer live side by side (formats.md §7.4):
 * ordinary layers unpacked by containerd into overlayfs directories; dadi/overlaybd layers pulled
 * lazily (a Prepare with the blob labels and an image reference is committed at once and answered
 * AlreadyExists, so containerd fetches nothing); and layer files on this node. A container on top
 * of dadi layers gets an overlay whose lowest lowerdir is the image's ext4, attached and mounted
 * once per image chain; with rwMode dir/dev it gets a dadi writable disk instead.
 */
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { renameSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { SnapshotterConfig } from '../config.ts';
import { errorMessage } from '../../errors.ts';
import { parseReference } from '../../registry/reference.ts';
import { log } from '../../util/log.ts';
import { StepTimes } from '../../util/steps.ts';
import { looksLikeLayer, type DeviceContext, type DeviceSpec, type LowerLayer } from './device.ts';
import { DeviceTable } from './devices.ts';
import { SnapshotError, notFound } from './errors.ts';
import { faultPoint } from './faults.ts';
import { mountsUsing } from './in-use.ts';
import { parseFilters, FilterSyntaxError } from './filters.ts';
import { imageRefOf, isInheritedLabel, Label, LabelError, REMOTE_SNAPSHOT, remoteBlockOf } from './labels.ts';
import { verifyTableOf } from '../../image/annotations.ts';
import { Layout } from './layout.ts';
import { MetadataStore, type Kind, type SnapshotRow } from './metadata.ts';
import { activeMounts, viewMounts, type MountSpec } from './mounts.ts';
import { diskUsage, type Usage } from './usage.ts';
import { writeDeviceConfig, type ConfigLower } from './device-config.ts';
import { Recovery } from './recovery.ts';
import { WritableDisks } from './writable.ts';
import { TraceSessions } from './trace.ts';
import type { LowerPlan, SnapshotterCore } from './core.ts';

export interface Info { name: string; parent: string; kind: Kind; createdMs: number; updatedMs: number; labels: Record<string, string> }


const BLOCK_STORAGE = new Set(['remoteBlock', 'localBlock']);

export class Snapshotter implements SnapshotterCore {
  readonly layout: Layout;
  readonly devices: DeviceTable;
  private readonly writable: WritableDisks;
  readonly traces: TraceSessions;

  private constructor(readonly db: MetadataStore, readonly config: SnapshotterConfig, readonly ctx: DeviceContext) {
    this.layout = new Layout(config.root);
    this.devices = new DeviceTable(ctx);
    this.writable = new WritableDisks(this);
    this.traces = new TraceSessions(this);
  }

  /** Opens the root, cleans up after a crash, and starts re-attaching devices active snapshots need. */
  static async open(config: SnapshotterConfig, ctx: DeviceContext): Promise<Snapshotter> {
    const layout = new Layout(config.root);
    await mkdir(layout.snapshotsDir, { recursive: true, mode: 0o700 });
    const s = new Snapshotter(MetadataStore.open(layout.metadataDb), config, ctx);
    await new Recovery(s).run();
    return s;
  }

  // ---- lookups -----------------------------------------------------------------------------

  row(key: string): SnapshotRow {
    const r = this.db.get(key);
    if (!r) throw notFound(`snapshot ${JSON.stringify(key)}`);
    return r;
  }

  info(r: SnapshotRow): Info {
    const parent = r.parentId === null ? '' : (this.db.getById(r.parentId)?.name ?? '');
    return { name: r.name, parent, kind: r.kind, createdMs: r.createdMs, updatedMs: r.updatedMs, labels: r.labels };
  }

  /** The layer a dadi snapshot contributes to a device. */
  lowerOf(r: SnapshotRow): LowerLayer {
    if (r.storage === 'remoteBlock') {
      const ref = imageRefOf(r.labels);
      if (!ref) throw new SnapshotError('FailedPrecondition', `snapshot ${r.name}: remote layer without an image reference label`);
      const parsed = parseReference(ref);
      const size = Number(r.labels[Label.blobSize]);
      const name = `${ref} layer ${r.labels[Label.blobDigest]}`;
      const table = verifyTableOf(r.labels, size, name);
      return { kind: 'remote', registry: parsed.registry, repository: parsed.repository, digest: r.labels[Label.blobDigest]!,
        size, name, ...(table ? { table } : {}) };
    }
    const path = r.labels[Label.localCommitPath] ?? this.layout.commitFile(r.id);
    return { kind: 'file', path, name: `snapshot ${r.name} (${path})` };
  }

  /** Lower dirs of a snapshot whose parent is `parentId`, nearest first, and the dadi device under them. */
  plan(parentId: number | null): LowerPlan {
    const dirs: string[] = [];
    if (parentId === null) return { dirs };
    const chain = this.db.chain(parentId);
    for (const [i, s] of chain.entries()) {
      if (s.storage === 'accel') continue;
      if (!BLOCK_STORAGE.has(s.storage)) {
        dirs.push(this.layout.fs(s.id));
        continue;
      }
      const below = chain.slice(i).filter((b) => b.storage !== 'accel');
      const plain = below.find((b) => !BLOCK_STORAGE.has(b.storage));
      if (plain) {
        throw new SnapshotError('FailedPrecondition', `snapshot ${s.name} is a dadi layer stacked on ordinary layer ${plain.name}; such a chain cannot be attached`);
      }
      const imageRef = below.map((b) => imageRefOf(b.labels)).find(Boolean) ?? s.name;
      return { dirs, block: { owner: s, lowers: below.reverse().map((b) => this.lowerOf(b)), imageRef } };
    }
    return { dirs };
  }

  /** The device spec of a read-only chain's shared mount. */
  roSpec(block: NonNullable<LowerPlan['block']>, beforeMount?: DeviceSpec['beforeMount']): () => DeviceSpec {
    return () => ({
      name: `image ${block.imageRef}`, lowers: block.lowers,
      workDir: this.layout.block(block.owner.id), mountPoint: this.layout.mountPoint(block.owner.id),
      ...(beforeMount ? { beforeMount } : {}),
    });
  }

  /** Attaches the chain's device for `user`, naming the image and registry when that fails. */
  async attachChain(block: NonNullable<LowerPlan['block']>, user: number, beforeMount?: DeviceSpec['beforeMount']): Promise<void> {
    try {
      await this.devices.acquire(block.owner.id, user, this.roSpec(block, beforeMount));
    } catch (err) {
      throw attachError(block.imageRef, block.lowers, err);
    }
  }

  // ---- Prepare / View -----------------------------------------------------------------------

  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<MountSpec[]> {
    return this.create('active', key, parent, labels);
  }

  async view(key: string, parent: string, labels: Record<string, string>): Promise<MountSpec[]> {
    return this.create('view', key, parent, labels);
  }

  private async create(kind: 'active' | 'view', key: string, parentName: string, labelsIn: Record<string, string>): Promise<MountSpec[]> {
    if (!key) throw new SnapshotError('InvalidArgument', 'snapshot key is empty');
    const labels = { ...labelsIn };
    if (this.db.get(key)) throw new SnapshotError('AlreadyExists', `snapshot ${JSON.stringify(key)} already exists`);
    const parent = parentName ? this.db.get(parentName) : undefined;
    if (parentName && !parent) throw notFound(`parent snapshot ${JSON.stringify(parentName)}`);
    if (parent && parent.kind !== 'committed') {
      throw new SnapshotError('InvalidArgument', `parent ${JSON.stringify(parentName)} is not a committed snapshot`);
    }
    let remote;
    try {
      remote = kind === 'active' ? remoteBlockOf(labels) : undefined;
    } catch (err) {
      if (err instanceof LabelError) throw new SnapshotError('InvalidArgument', err.message);
      throw err;
    }
    if (remote) return this.pullRemote(key, parent ?? null, labels, remote.targetRef);

    const mode = this.writable.modeFor(labels, parent ?? null);
    if (kind === 'active' && mode !== 'overlayfs') return this.writable.prepare(key, parent ?? null, labels, mode);

    const steps = new StepTimes();
    const plan = this.plan(parent?.id ?? null);
    const row = await steps.time('insert', () => this.insertWithDirs({ name: key, parentId: parent?.id ?? null, kind, labels, storage: 'normal' }, kind === 'active'));
    faultPoint('prepare:after-insert');
    try {
      if (plan.block) {
        const hook = kind === 'active' ? await this.traces.beforeMount(row, plan, labels) : undefined;
        await steps.time('attach', () => this.attachChain(plan.block!, row.id, hook));
      }
    } catch (err) {
      await this.dropRow(row).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'undoing a failed prepare'));
      throw err;
    }
    faultPoint('prepare:after-attach');
    if (kind === 'active') await steps.time('trace', () => this.traces.prepared(row, plan, labels));
    log.debug({ key, steps: steps.rounded() }, 'prepare steps');
    return this.mountsOf(row, plan);
  }

  /**
   * The lazy pull of one dadi layer (formats.md §7.5): committed at once under the chain ID
   * containerd asked for, with its device config written, and answered AlreadyExists.
   */
  private async pullRemote(key: string, parent: SnapshotRow | null, labels: Record<string, string>, target: string): Promise<never> {
    const existing = this.db.get(target);
    if (!existing) {
      const kept: Record<string, string> = { [Label.remote]: REMOTE_SNAPSHOT };
      for (const [k, v] of Object.entries(labels)) if (isInheritedLabel(k)) kept[k] = v;
      const row = await this.insertWithDirs({ name: target, parentId: parent?.id ?? null, kind: 'committed', labels: kept, storage: 'remoteBlock',
        usageSize: Number(labels[Label.blobSize]) }, false, async (dir) => {
        const ref = imageRefOf(labels)!;
        await writeFile(`${dir}/image_ref`, ref);
      });
      faultPoint('prepare:after-remote-commit');
      await this.writeConfig(row).catch((err: unknown) => log.warn({ err: errorMessage(err), snapshot: target }, 'writing config.v1.json'));
      log.info({ key, target, digest: labels[Label.blobDigest] }, 'remote layer committed (lazy pull)');
      this.devices.warm(this.lowerOf(row));
    }
    throw new SnapshotError('AlreadyExists', `target snapshot ${JSON.stringify(target)} already exists (remote dadi layer)`);
  }

  /** Writes block/config.v1.json for a dadi layer snapshot (its chain's lowers). */
  async writeConfig(row: SnapshotRow, upper?: { data: string; index: string }): Promise<void> {
    const chain = this.db.chain(row.id).filter((b) => b.storage !== 'accel').reverse();
    const lowers: ConfigLower[] = chain.filter((b) => BLOCK_STORAGE.has(b.storage)).map((b) => (b.storage === 'remoteBlock'
      ? { digest: b.labels[Label.blobDigest]!, size: Number(b.labels[Label.blobSize]), dir: this.layout.fs(b.id) }
      : { dir: this.layout.fs(b.id) }));
    const ref = chain.map((b) => imageRefOf(b.labels)).find(Boolean);
    let repoBlobUrl = '';
    if (ref) {
      const p = parseReference(ref);
      repoBlobUrl = `${this.ctx.client.baseUrl(p.registry)}/v2/${p.repository}/blobs`;
    }
    await mkdir(this.layout.block(row.id), { recursive: true });
    await writeDeviceConfig(this.layout.deviceConfig(row.id), { repoBlobUrl, lowers, ...(upper ? { upper } : {}), resultFile: this.layout.resultFile(row.id) });
  }

  /**
   * Creates the snapshot's directories under a staging name, then inserts the row and renames
   * the directory into place in one transaction.
   */
  async insertWithDirs(s: Parameters<MetadataStore['insert']>[0], withWork: boolean, fill?: (dir: string) => Promise<void>): Promise<SnapshotRow> {
    const staging = this.layout.staging(randomBytes(6).toString('hex'));
    await mkdir(`${staging}/fs`, { recursive: true, mode: 0o755 });
    if (withWork) await mkdir(`${staging}/work`, { mode: 0o711 });
    try {
      if (fill) await fill(staging);
      return this.db.insert(s, (id) => {
        faultPoint('insert:before-rename');
        renameSync(staging, this.layout.dir(id));
      });
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      if (err instanceof Error && /UNIQUE constraint failed/.test(err.message)) {
        throw new SnapshotError('AlreadyExists', `snapshot ${JSON.stringify(s.name)} already exists`);
      }
      throw err;
    }
  }

  mountsOf(row: SnapshotRow, plan: LowerPlan): MountSpec[] {
    const lowerDirs = [...plan.dirs, ...(plan.block ? [this.layout.mountPoint(plan.block.owner.id)] : [])];
    if (row.kind === 'view') return viewMounts(this.layout.fs(row.id), lowerDirs);
    return activeMounts(this.layout.fs(row.id), this.layout.work(row.id), lowerDirs);
  }

  // ---- Mounts / Commit / Remove -----------------------------------------------------------

  async mounts(key: string): Promise<MountSpec[]> {
    const row = this.row(key);
    if (row.kind === 'committed') throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(key)} is committed; only active snapshots and views have mounts`);
    if (row.storage === 'writable') return this.writable.mounts(row);
    const plan = this.plan(row.parentId);
    if (plan.block) await this.attachChain(plan.block, row.id);
    return this.mountsOf(row, plan);
  }

  async commit(name: string, key: string, labelsIn: Record<string, string>): Promise<void> {
    if (!name) throw new SnapshotError('InvalidArgument', 'commit name is empty');
    const row = this.row(key);
    if (row.kind !== 'active') throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(key)} is a ${row.kind}; only an active snapshot can be committed`);
    if (this.db.get(name)) throw new SnapshotError('AlreadyExists', `snapshot ${JSON.stringify(name)} already exists`);
    const labels = { ...row.labels, ...labelsIn };
    if (row.storage === 'writable') {
      await this.writable.commit(row, name, labels);
      return;
    }
    const usage: Usage = await diskUsage(this.layout.fs(row.id));
    const storage = labels[Label.accelerationLayer] === 'yes' ? 'accel' : (await hasLayerMagic(this.layout.commitFile(row.id))) ? 'localBlock' : 'normal';
    faultPoint('commit:before-db');
    let committed: SnapshotRow;
    try {
      committed = this.db.commit(row.id, { name, labels, storage, usageSize: usage.size, usageInodes: usage.inodes });
    } catch (err) {
      if (err instanceof Error && /UNIQUE constraint failed/.test(err.message)) throw new SnapshotError('AlreadyExists', `snapshot ${JSON.stringify(name)} already exists`);
      throw err;
    }
    faultPoint('commit:after-db');
    if (storage === 'localBlock') await this.writeConfig(committed).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'writing config.v1.json'));
    await this.releaseChain(row);
    await rm(this.layout.work(row.id), { recursive: true, force: true });
  }

  /** `row` no longer uses the device of its chain (it was committed or removed). */
  async releaseChain(row: SnapshotRow): Promise<void> {
    let plan: LowerPlan;
    try {
      plan = this.plan(row.parentId);
    } catch {
      return;
    }
    if (!plan.block) return;
    await this.devices.release(plan.block.owner.id, row.id, { force: true })
      .catch((err: unknown) => log.warn({ err: errorMessage(err), owner: plan.block!.owner.name }, 'detaching an image device'));
  }

  async remove(key: string): Promise<void> {
    const row = this.row(key);
    if (this.db.children(row.id) > 0) throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(key)} has children; remove them first`);
    const inUse = await this.inUse(row);
    if (inUse) throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(key)} is in use: ${inUse}`);
    if (row.storage === 'writable') await this.writable.detach(row);
    if (this.devices.has(row.id)) {
      // A dadi layer's own shared mount: no children means no users, so this only tidies up.
      for (const u of [...this.devices.users(row.id)]) await this.devices.release(row.id, u, { force: true });
    }
    await this.traces.removed(row);
    faultPoint('remove:before-db');
    await this.dropRow(row);
    faultPoint('remove:after-db');
  }

  /** Deletes the row and its directory (renamed aside in the transaction, deleted after). */
  private async dropRow(row: SnapshotRow): Promise<void> {
    const aside = this.layout.removing(row.id);
    this.db.remove(row.id, () => renameSync(this.layout.dir(row.id), aside));
    faultPoint('remove:after-rename');
    await this.releaseChain(row);
    await rm(aside, { recursive: true, force: true });
  }

  /** Why the snapshot's directories are still mounted by someone else, or undefined. */
  private async inUse(row: SnapshotRow): Promise<string | undefined> {
    return mountsUsing(this.layout.dir(row.id), this.devices.has(row.id) ? await this.devices.get(row.id)!.then((d) => d.device, () => undefined) : undefined,
      this.layout.mountPoint(row.id));
  }

  // ---- Stat / Update / Walk / Usage / Cleanup ---------------------------------------------

  stat(key: string): Info {
    return this.info(this.row(key));
  }

  update(info: { name: string; labels: Record<string, string> }, paths: readonly string[]): Info {
    const row = this.row(info.name);
    let labels: Record<string, string>;
    if (paths.length === 0) {
      labels = { ...info.labels };
    } else {
      labels = { ...row.labels };
      for (const p of paths) {
        if (p === 'labels') {
          labels = { ...info.labels };
        } else if (p.startsWith('labels.')) {
          const k = p.slice('labels.'.length);
          if (info.labels[k] !== undefined) labels[k] = info.labels[k]!;
          else delete labels[k];
        } else {
          throw new SnapshotError('InvalidArgument', `cannot update field ${JSON.stringify(p)} of snapshot ${JSON.stringify(info.name)}; only labels can change`);
        }
      }
    }
    return this.info(this.db.setLabels(row.id, labels));
  }

  list(filters: readonly string[]): Info[] {
    let f;
    try {
      f = parseFilters(filters);
    } catch (err) {
      if (err instanceof FilterSyntaxError) throw new SnapshotError('InvalidArgument', err.message);
      throw err;
    }
    return this.db.all().map((r) => this.info(r)).filter((i) => f.match((path) => {
      switch (path[0]) {
        case 'name': return path.length === 1 ? i.name : undefined;
        case 'parent': return path.length === 1 ? i.parent : undefined;
        case 'kind': return path.length === 1 ? i.kind : undefined;
        case 'labels': return path.length > 1 ? i.labels[path.slice(1).join('.')] : undefined;
        default: return undefined;
      }
    }));
  }

  async usage(key: string): Promise<Usage> {
    const row = this.row(key);
    if (row.kind === 'committed') return { size: row.usageSize, inodes: row.usageInodes };
    const u = await diskUsage(this.layout.fs(row.id));
    if (row.storage === 'writable') {
      const w = await diskUsage(this.layout.block(row.id)).catch(() => ({ size: 0, inodes: 0 }));
      return { size: u.size + w.size, inodes: u.inodes };
    }
    return u;
  }

  /** Removes directories no snapshot owns (left by a crash between steps). */
  async cleanup(): Promise<string[]> {
    return new Recovery(this).removeOrphanDirs();
  }

  async close(): Promise<void> {
    await this.traces.closeAll();
    await this.devices.closeAll();
    this.db.close();
  }

}

/** Whether `path` starts with the LSMT or ZFile magic (a committed dadi layer unpacked by containerd). */
export async function hasLayerMagic(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const head = Buffer.alloc(24);
    const { bytesRead } = await fh.read(head, 0, 24, 0);
    if (bytesRead < 24) return false;
    return looksLikeLayer(head);
  } finally {
    await fh.close();
  }
}

function attachError(imageRef: string, lowers: readonly LowerLayer[], err: unknown): SnapshotError {
  const registries = [...new Set(lowers.flatMap((l) => (l.kind === 'remote' ? [l.registry] : [])))];
  const where = registries.length > 0 ? ` from registry ${registries.join(', ')}` : '';
  return new SnapshotError('Unavailable', `cannot attach image ${imageRef}${where}: ${errorMessage(err)}`, { cause: err });
}
