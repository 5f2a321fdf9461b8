/**
 * A small client for containerd's gRPC API (and for any snapshots service, such as dadi's own):
 * promise-returning calls with the namespace (`containerd-namespace`) and lease
 * (`containerd-lease`) headers containerd reads, and its error codes kept on the error so callers
 * can tell AlreadyExists or NotFound from a failure.
 */
import * as grpc from '@grpc/grpc-js';
import { contentService, imagesService, leasesService, snapshotsService, type PbDescriptor, type PbInfo, type PbMount } from '../grpc/protos.ts';

export class ContainerdError extends Error {
  override readonly name = 'ContainerdError';
  constructor(readonly code: grpc.status, readonly method: string, message: string) {
    super(`${method}: ${message}`);
  }
}

export const isCode = (err: unknown, code: grpc.status): boolean => err instanceof ContainerdError && err.code === code;

type UnaryFn = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown;

export interface ClientOptions {
  namespace?: string;
  /** Per-call deadline (default 5 minutes: a rootfs Prepare may attach over a slow link). */
  timeoutMs?: number;
}

/** One connection to a unix socket, shared by the service stubs made from it. */
export class GrpcConnection {
  private readonly stubs = new Map<string, grpc.Client>();
  lease: string | undefined;

  constructor(readonly address: string, readonly opts: ClientOptions = {}) {}

  private stub(ctor: grpc.ServiceClientConstructor): grpc.Client {
    const name = ctor.serviceName;
    let s = this.stubs.get(name);
    if (!s) {
      s = new ctor(`unix:${this.address}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 });
      this.stubs.set(name, s);
    }
    return s;
  }

  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.opts.namespace) md.set('containerd-namespace', this.opts.namespace);
    if (this.lease) md.set('containerd-lease', this.lease);
    return md;
  }

  unary<Res>(ctor: grpc.ServiceClientConstructor, method: string, req: unknown): Promise<Res> {
    const stub = this.stub(ctor) as unknown as Record<string, UnaryFn>;
    const deadline = Date.now() + (this.opts.timeoutMs ?? 300_000);
    return new Promise((resolve, reject) => {
      stub[method]!.call(stub, req, this.metadata(), { deadline }, (err, res) => {
        if (err) reject(new ContainerdError(err.code, `${ctor.serviceName.split('.').pop()}.${method}`, err.details || err.message));
        else resolve(res as Res);
      });
    });
  }

  serverStream<Res>(ctor: grpc.ServiceClientConstructor, method: string, req: unknown): Promise<Res[]> {
    const stub = this.stub(ctor) as unknown as Record<string, (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<Res>>;
    return new Promise((resolve, reject) => {
      const out: Res[] = [];
      const call = stub[method]!.call(stub, req, this.metadata());
      call.on('data', (d: Res) => out.push(d));
      call.on('error', (err: grpc.ServiceError) => reject(new ContainerdError(err.code, `${ctor.serviceName}.${method}`, err.details || err.message)));
      call.on('end', () => resolve(out));
    });
  }

  bidi<Req, Res>(ctor: grpc.ServiceClientConstructor, method: string): grpc.ClientDuplexStream<Req, Res> {
    const stub = this.stub(ctor) as unknown as Record<string, (md: grpc.Metadata) => grpc.ClientDuplexStream<Req, Res>>;
    return stub[method]!.call(stub, this.metadata());
  }

  close(): void {
    for (const s of this.stubs.values()) s.close();
    this.stubs.clear();
  }
}

/** The snapshots API, of containerd (naming a snapshotter) or of a proxy snapshotter directly. */
export class SnapshotsClient {
  private readonly svc = snapshotsService();
  constructor(readonly conn: GrpcConnection, readonly snapshotter = '') {}

  private call<Res>(method: string, req: object): Promise<Res> {
    return this.conn.unary<Res>(this.svc, method, { snapshotter: this.snapshotter, ...req });
  }

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<PbMount[]> {
    return (await this.call<{ mounts: PbMount[] }>('Prepare', { key, parent, labels })).mounts;
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<PbMount[]> {
    return (await this.call<{ mounts: PbMount[] }>('View', { key, parent, labels })).mounts;
  }
  async mounts(key: string): Promise<PbMount[]> {
    return (await this.call<{ mounts: PbMount[] }>('Mounts', { key })).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.call('Commit', { name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.call('Remove', { key });
  }
  async stat(key: string): Promise<PbInfo> {
    return (await this.call<{ info: PbInfo }>('Stat', { key })).info;
  }
  async update(info: { name: string; labels: Record<string, string> }, paths: string[] = []): Promise<PbInfo> {
    return (await this.call<{ info: PbInfo }>('Update', { info: { ...info, parent: '', kind: 'UNKNOWN' }, update_mask: { paths } })).info;
  }
  async list(filters: string[] = []): Promise<PbInfo[]> {
    const pages = await this.conn.serverStream<{ info: PbInfo[] }>(this.svc, 'List', { snapshotter: this.snapshotter, filters });
    return pages.flatMap((p) => p.info);
  }
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return this.call('Usage', { key });
  }
  async cleanup(): Promise<void> {
    await this.call('Cleanup', {});
  }
}

export interface ContentInfo { digest: string; size: number; labels: Record<string, string> }

/** The parts of containerd's content, images and leases services that a pull needs. */
export class ContainerdClient {
  readonly conn: GrpcConnection;
  private readonly content = contentService();
  private readonly images = imagesService();
  private readonly leases = leasesService();

  constructor(address: string, namespace: string, opts: { timeoutMs?: number } = {}) {
    this.conn = new GrpcConnection(address, { namespace, ...opts });
  }

  snapshots(snapshotter: string): SnapshotsClient {
    return new SnapshotsClient(this.conn, snapshotter);
  }

  /** Creates a lease and sends it with every later call until `deleteLease`. */
  async createLease(id: string, expireSeconds: number): Promise<void> {
    const expire = new Date(Date.now() + expireSeconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    await this.conn.unary(this.leases, 'Create', { id, labels: { 'containerd.io/gc.expire': expire } });
    this.conn.lease = id;
  }

  async deleteLease(): Promise<void> {
    const id = this.conn.lease;
    if (!id) return;
    this.conn.lease = undefined;
    await this.conn.unary(this.leases, 'Delete', { id, sync: false });
  }

  async contentInfo(digest: string): Promise<ContentInfo | undefined> {
    try {
      const r = await this.conn.unary<{ info: ContentInfo }>(this.content, 'Info', { digest });
      return r.info;
    } catch (err) {
      if (isCode(err, grpc.status.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async updateContentLabels(digest: string, labels: Record<string, string>): Promise<void> {
    await this.conn.unary(this.content, 'Update', {
      info: { digest, labels }, update_mask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
    });
  }

  /**
   * Writes a blob into the content store with `labels` (stat, write, commit on one stream), or,
   * when containerd has it already, sets the labels on it.
   */
  async writeContent(digest: string, data: Uint8Array, labels: Record<string, string>): Promise<void> {
    if (await this.contentInfo(digest)) {
      await this.updateContentLabels(digest, labels);
      return;
    }
    const ref = `dadi-pull-${digest}`;
    const stream = this.conn.bidi<object, { action: string; offset: number; digest: string }>(this.content, 'Write');
    const replies: Array<{ action: string; offset: number; digest: string }> = [];
    let waiter: (() => void) | undefined;
    let failure: grpc.ServiceError | undefined;
    let ended = false;
    stream.on('data', (r: { action: string; offset: number; digest: string }) => { replies.push(r); waiter?.(); });
    stream.on('error', (err: grpc.ServiceError) => { failure = err; waiter?.(); });
    stream.on('end', () => { ended = true; waiter?.(); });
    const next = async (): Promise<{ action: string; offset: number; digest: string }> => {
      for (;;) {
        const r = replies.shift();
        if (r) return r;
        if (failure) throw new ContainerdError(failure.code, 'Content.Write', failure.details || failure.message);
        if (ended) throw new ContainerdError(grpc.status.UNKNOWN, 'Content.Write', 'stream ended early');
        await new Promise<void>((res) => { waiter = res; });
        waiter = undefined;
      }
    };
    try {
      stream.write({ action: 'STAT', ref, total: data.length, expected: digest });
      const st = await next();
      let offset = st.offset > data.length ? 0 : st.offset;
      const CHUNK = 1 << 20;
      for (; offset < data.length; offset += CHUNK) {
        stream.write({ action: 'WRITE', ref, offset, data: data.subarray(offset, offset + CHUNK) });
        await next();
      }
      stream.write({ action: 'COMMIT', ref, total: data.length, expected: digest, offset: data.length, labels });
      await next();
      stream.end();
    } catch (err) {
      stream.cancel();
      if (isCode(err, grpc.status.ALREADY_EXISTS)) {
        await this.updateContentLabels(digest, labels);
        return;
      }
      throw err;
    }
  }

  async getImage(name: string): Promise<{ name: string; target: PbDescriptor } | undefined> {
    try {
      return (await this.conn.unary<{ image: { name: string; target: PbDescriptor } }>(this.images, 'Get', { name })).image;
    } catch (err) {
      if (isCode(err, grpc.status.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  /** Creates the image record, or points an existing one at the new target. */
  async putImage(name: string, target: PbDescriptor, labels: Record<string, string> = {}): Promise<void> {
    const image = { name, target, labels };
    try {
      await this.conn.unary(this.images, 'Create', { image });
    } catch (err) {
      if (!isCode(err, grpc.status.ALREADY_EXISTS)) throw err;
      await this.conn.unary(this.images, 'Update', { image, update_mask: { paths: ['target', 'labels'] } });
    }
  }

  close(): void {
    this.conn.close();
  }
}
