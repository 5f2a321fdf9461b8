/**
 * The containerd API definitions (proto/containerd/*.proto at the package root), loaded once with
 * @grpc/proto-loader. Field names stay snake_case as on the wire; 64-bit integers arrive as
 * numbers (sizes stay far below 2^53); enums as their names.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/** proto/containerd, found from this file in src/daemon/grpc or dist/daemon/grpc alike. */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/containerd/', import.meta.url));

const FILES = ['snapshots.proto', 'content.proto', 'images.proto', 'leases.proto'];

let loaded: grpc.GrpcObject | undefined;

function load(): grpc.GrpcObject {
  if (!loaded) {
    const def = protoLoader.loadSync(FILES, {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      arrays: true,
      objects: true,
    });
    loaded = grpc.loadPackageDefinition(def);
  }
  return loaded;
}

function pick(path: string): grpc.ServiceClientConstructor {
  let node: unknown = load();
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`proto service ${path} not found in ${PROTO_DIR}`);
  return node as grpc.ServiceClientConstructor;
}

export const snapshotsService = (): grpc.ServiceClientConstructor => pick('containerd.services.snapshots.v1.Snapshots');
export const contentService = (): grpc.ServiceClientConstructor => pick('containerd.services.content.v1.Content');
export const imagesService = (): grpc.ServiceClientConstructor => pick('containerd.services.images.v1.Images');
export const leasesService = (): grpc.ServiceClientConstructor => pick('containerd.services.leases.v1.Leases');

/** The wire shapes we read and write. */
export interface PbTimestamp { seconds: number; nanos: number }
export interface PbMount { type: string; source: string; target?: string; options: string[] }
export type PbKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
export interface PbInfo {
  name: string;
  parent: string;
  kind: PbKind;
  created_at?: PbTimestamp | null;
  updated_at?: PbTimestamp | null;
  labels: Record<string, string>;
}
export interface PbDescriptor { media_type: string; digest: string; size: number; annotations?: Record<string, string> }

export function toTimestamp(ms: number): PbTimestamp {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

export function fromTimestamp(t: PbTimestamp | null | undefined): number {
  return t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : 0;
}
