/**
 * LSMT test plumbing: the logical sha256 of a layer over its virtual size, computed by walking
 * extents (zero runs hashed from one shared zero buffer, so a 1 GiB disk costs no 1 GiB buffer).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ByteSource } from '../../src/io/types.ts';
import type { Lookup } from '../../src/format/lsmt/read.ts';
import { vector } from './env.ts';

const ZEROS = new Uint8Array(1 << 20);

export async function logicalSha256(lookup: Lookup, data: ByteSource, virtualSize: number): Promise<string> {
  const h = createHash('sha256');
  const zero = (n: number): void => {
    while (n > 0) { const k = Math.min(n, ZEROS.length); h.update(ZEROS.subarray(0, k)); n -= k; }
  };
  const extents: [number, number, number, boolean][] = [];
  lookup(0, Math.ceil(virtualSize / 512), (s, n, m, z) => { extents.push([s, n, m, z]); });
  let pos = 0;
  for (const [s, n, m, z] of extents) {
    const start = s * 512;
    const end = Math.min((s + n) * 512, virtualSize);
    zero(start - pos);
    if (z) zero(end - start);
    else {
      const buf = new Uint8Array(end - start);
      const got = await data.read(buf, m * 512);
      if (got !== buf.length) throw new Error(`short read at moffset ${m}`);
      h.update(buf);
    }
    pos = end;
  }
  zero(virtualSize - pos);
  return h.digest('hex');
}

interface ManifestFile { name: string; sha256: string; logical?: { virtual_size: number; sha256: string } }
export interface WriteOp { op: string; offset: number; length: number; content: string }
export interface Manifest { files: ManifestFile[]; lsmt_writes: Record<string, WriteOp[]> }

export function manifest(): Manifest {
  return JSON.parse(readFileSync(vector('manifest.json'), 'utf8')) as Manifest;
}

export function manifestFile(name: string): ManifestFile {
  const f = manifest().files.find((x) => x.name === name);
  if (!f) throw new Error(`manifest has no ${name}`);
  return f;
}

/** The bytes a manifest write op writes: `payload.bin[a:b]`. */
export function opContent(op: WriteOp, payload: Uint8Array): Uint8Array {
  const m = /^payload\.bin\[(\d+):(\d+)\]$/.exec(op.content);
  if (!m) throw new Error(`unexpected content ${op.content}`);
  return payload.subarray(Number(m[1]), Number(m[2]));
}
