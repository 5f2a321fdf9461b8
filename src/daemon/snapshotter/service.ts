/**
 * containerd.services.snapshots.v1.Snapshots over gRPC: decodes requests, calls the snapshotter,
 * encodes answers, and maps errors to the status codes containerd turns back into its error
 * classes (errdefs). Every call is logged at debug level with its duration.
 */
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../../errors.ts';
import { log } from '../../util/log.ts';
import { snapshotsService, toTimestamp, type PbInfo, type PbMount } from '../grpc/protos.ts';
import { SnapshotError, type SnapshotErrorCode } from './errors.ts';
import type { MountSpec } from './mounts.ts';
import type { Info, Snapshotter } from './snapshotter.ts';

const CODES: Record<SnapshotErrorCode, grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  Unavailable: grpc.status.UNAVAILABLE,
  Internal: grpc.status.INTERNAL,
};

function toStatus(err: unknown): grpc.ServiceError {
  const code = err instanceof SnapshotError ? CODES[err.code] : grpc.status.UNKNOWN;
  return Object.assign(new Error(errorMessage(err)), { code, details: errorMessage(err), metadata: new grpc.Metadata() });
}

function pbInfo(i: Info): PbInfo {
  return {
    name: i.name, parent: i.parent, kind: i.kind.toUpperCase() as PbInfo['kind'],
    created_at: toTimestamp(i.createdMs), updated_at: toTimestamp(i.updatedMs), labels: i.labels,
  };
}

function pbMounts(ms: MountSpec[]): PbMount[] {
  return ms.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options }));
}

type Handler<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => void;

function unary<Req, Res>(op: string, fn: (req: Req) => Promise<Res> | Res): Handler<Req, Res> {
  return (call, cb) => {
    const started = performance.now();
    Promise.resolve().then(() => fn(call.request)).then((res) => {
      log.debug({ op, req: call.request, ms: Math.round(performance.now() - started) }, 'snapshots call');
      cb(null, res);
    }, (err: unknown) => {
      const expected = err instanceof SnapshotError && (err.code === 'AlreadyExists' || err.code === 'NotFound');
      log[expected ? 'debug' : 'warn']({ op, req: call.request, err: errorMessage(err), ms: Math.round(performance.now() - started) }, 'snapshots call failed');
      cb(toStatus(err));
    });
  };
}

interface KeyReq { key: string }
interface CreateReq { key: string; parent: string; labels: Record<string, string> }

export function snapshotsHandlers(s: Snapshotter): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary('Prepare', async (r: CreateReq) => ({ mounts: pbMounts(await s.prepare(r.key, r.parent, r.labels ?? {})) })),
    View: unary('View', async (r: CreateReq) => ({ mounts: pbMounts(await s.view(r.key, r.parent, r.labels ?? {})) })),
    Mounts: unary('Mounts', async (r: KeyReq) => ({ mounts: pbMounts(await s.mounts(r.key)) })),
    Commit: unary('Commit', async (r: { name: string; key: string; labels: Record<string, string> }) => {
      await s.commit(r.name, r.key, r.labels ?? {});
      return {};
    }),
    Remove: unary('Remove', async (r: KeyReq) => {
      await s.remove(r.key);
      return {};
    }),
    Stat: unary('Stat', (r: KeyReq) => ({ info: pbInfo(s.stat(r.key)) })),
    Update: unary('Update', (r: { info?: PbInfo; update_mask?: { paths?: string[] } }) => {
      if (!r.info?.name) throw new SnapshotError('InvalidArgument', 'Update needs info.name');
      return { info: pbInfo(s.update({ name: r.info.name, labels: r.info.labels ?? {} }, r.update_mask?.paths ?? [])) };
    }),
    List: (call: grpc.ServerWritableStream<{ filters: string[] }, { info: PbInfo[] }>) => {
      try {
        const infos = s.list(call.request.filters ?? []);
        // containerd's own server sends batches; 100 per message keeps each well under the size limit.
        for (let i = 0; i < infos.length; i += 100) call.write({ info: infos.slice(i, i + 100).map(pbInfo) });
        call.end();
      } catch (err) {
        call.emit('error', toStatus(err));
      }
    },
    Usage: unary('Usage', async (r: KeyReq) => s.usage(r.key)),
    Cleanup: unary('Cleanup', async () => {
      await s.cleanup();
      return {};
    }),
  };
}

export function addSnapshotsService(server: grpc.Server, s: Snapshotter): void {
  server.addService(snapshotsService().service, snapshotsHandlers(s));
}
