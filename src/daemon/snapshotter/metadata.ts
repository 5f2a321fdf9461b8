/**
 * The snapshot metadata: one SQLite database (better-sqlite3, WAL, synchronous=NORMAL) holding
 * every snapshot's name, parent, kind, labels, storage type and usage. Each change is one
 * transaction; callers pass a synchronous step (renaming the snapshot's directory into place or
 * out of the way) that runs inside it, so the row and the directory change together or not at
 * all: a crash leaves either the old state or the new one, plus at most a directory without a
 * row, which recovery deletes.
 */
import Database from 'better-sqlite3';

export type Kind = 'view' | 'active' | 'committed';
/**
 * How a snapshot's content is stored (formats.md §7.4): `normal` is an overlayfs directory,
 * `remoteBlock` a lazily pulled dadi/overlaybd layer in a registry, `localBlock` a layer file on
 * this node (fs/overlaybd.commit or fs/overlaybd.sealed), `writable` an active snapshot with a
 * dadi writable layer (rwMode dir/dev), `accel` a trace layer (not part of the disk).
 */
export type Storage = 'normal' | 'remoteBlock' | 'localBlock' | 'writable' | 'accel';

export interface SnapshotRow {
  id: number;
  name: string;
  parentId: number | null;
  kind: Kind;
  labels: Record<string, string>;
  createdMs: number;
  updatedMs: number;
  storage: Storage;
  usageSize: number;
  usageInodes: number;
}

interface RawRow {
  id: number; name: string; parent_id: number | null; kind: Kind; labels: string; created_ms: number; updated_ms: number;
  storage: Storage; usage_size: number; usage_inodes: number;
}

function fromRaw(r: RawRow): SnapshotRow {
  return {
    id: r.id, name: r.name, parentId: r.parent_id, kind: r.kind, labels: JSON.parse(r.labels) as Record<string, string>,
    createdMs: r.created_ms, updatedMs: r.updated_ms, storage: r.storage, usageSize: r.usage_size, usageInodes: r.usage_inodes,
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
  labels TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  storage TEXT NOT NULL,
  usage_size INTEGER NOT NULL DEFAULT 0,
  usage_inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
`;

export interface NewSnapshot {
  name: string;
  parentId: number | null;
  kind: Kind;
  labels: Record<string, string>;
  storage: Storage;
  usageSize?: number;
  usageInodes?: number;
}

export class MetadataStore {
  private readonly db: Database.Database;
  private readonly byName: Database.Statement<[string], RawRow>;
  private readonly byId: Database.Statement<[number], RawRow>;
  private readonly childCount: Database.Statement<[number], { n: number }>;

  private constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // A committed WAL transaction survives kill -9 of this process without an fsync per commit
    // (it is in the OS page cache); only a power loss can drop the last ones, never corrupt.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    this.byName = this.db.prepare('SELECT * FROM snapshots WHERE name = ?');
    this.byId = this.db.prepare('SELECT * FROM snapshots WHERE id = ?');
    this.childCount = this.db.prepare('SELECT count(*) AS n FROM snapshots WHERE parent_id = ?');
  }

  static open(path: string): MetadataStore {
    return new MetadataStore(path);
  }

  get(name: string): SnapshotRow | undefined {
    const r = this.byName.get(name);
    return r ? fromRaw(r) : undefined;
  }

  getById(id: number): SnapshotRow | undefined {
    const r = this.byId.get(id);
    return r ? fromRaw(r) : undefined;
  }

  all(): SnapshotRow[] {
    return (this.db.prepare('SELECT * FROM snapshots ORDER BY id').all() as RawRow[]).map(fromRaw);
  }

  children(id: number): number {
    return this.childCount.get(id)!.n;
  }

  /** The snapshot and its ancestors, nearest first. */
  chain(id: number): SnapshotRow[] {
    const out: SnapshotRow[] = [];
    for (let cur = this.getById(id); cur; cur = cur.parentId === null ? undefined : this.getById(cur.parentId)) out.push(cur);
    return out;
  }

  /** Inserts a snapshot; `step(id)` runs inside the transaction (an exception rolls both back). */
  insert(s: NewSnapshot, step: (id: number) => void): SnapshotRow {
    const now = Date.now();
    return this.db.transaction(() => {
      const info = this.db.prepare(`INSERT INTO snapshots (name, parent_id, kind, labels, created_ms, updated_ms, storage, usage_size, usage_inodes)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(s.name, s.parentId, s.kind, JSON.stringify(s.labels), now, now, s.storage,
        s.usageSize ?? 0, s.usageInodes ?? 0);
      const id = Number(info.lastInsertRowid);
      step(id);
      return this.getById(id)!;
    })();
  }

  /** Turns active snapshot `id` into committed snapshot `name`. */
  commit(id: number, change: { name: string; labels: Record<string, string>; storage: Storage; usageSize: number; usageInodes: number },
    step: () => void = () => {}): SnapshotRow {
    return this.db.transaction(() => {
      this.db.prepare(`UPDATE snapshots SET name = ?, kind = 'committed', labels = ?, storage = ?, usage_size = ?, usage_inodes = ?, updated_ms = ?
        WHERE id = ? AND kind = 'active'`).run(change.name, JSON.stringify(change.labels), change.storage, change.usageSize, change.usageInodes, Date.now(), id);
      step();
      return this.getById(id)!;
    })();
  }

  setLabels(id: number, labels: Record<string, string>): SnapshotRow {
    this.db.prepare('UPDATE snapshots SET labels = ?, updated_ms = ? WHERE id = ?').run(JSON.stringify(labels), Date.now(), id);
    return this.getById(id)!;
  }

  setStorage(id: number, storage: Storage): void {
    this.db.prepare('UPDATE snapshots SET storage = ? WHERE id = ?').run(storage, id);
  }

  /** Deletes snapshot `id` (which must have no children); `step` runs inside the transaction. */
  remove(id: number, step: () => void = () => {}): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
      step();
    })();
  }

  close(): void {
    this.db.close();
  }
}
