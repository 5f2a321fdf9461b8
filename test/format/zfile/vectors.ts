/** The ZFile-bearing entries of the shared vector manifest and the bytes each must decompress to. */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { vector } from '../../helpers/env.ts';

export interface ManifestFile {
  name: string;
  kind: string;
  size: number;
  sha256: string;
  logical?: { virtual_size: number; sha256?: string };
  zfile_logical?: { virtual_size: number; sha256: string };
  upstream_roundtrip?: boolean;
}

export const manifest = JSON.parse(readFileSync(vector('manifest.json'), 'utf8')) as { files: ManifestFile[] };

/** Kinds whose file is (possibly tar-wrapped) ZFile data. */
export function isZFileKind(kind: string): boolean {
  return kind === 'zfile' || kind === 'zfile-in-tar' || kind === 'zfile-of-lsmt' ||
    (kind.startsWith('lsmt-') && /zfile/.test(kind));
}

export function isTarKind(kind: string): boolean {
  return kind.endsWith('-in-tar');
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * The expected decompressed size and sha256 the manifest states for a ZFile vector: `zfile_logical`
 * when given, `logical` for plain ZFiles of raw data; for a tar-wrapped file without either, the
 * entry of the manifest file whose bytes equal the tar payload (found by its sha256).
 */
export function expectedPlain(f: ManifestFile, payloadSha?: string): { size: number; sha256: string } | undefined {
  if (f.zfile_logical) return { size: f.zfile_logical.virtual_size, sha256: f.zfile_logical.sha256 };
  if ((f.kind === 'zfile' || f.kind === 'zfile-in-tar') && f.logical?.sha256) {
    return { size: f.logical.virtual_size, sha256: f.logical.sha256 };
  }
  if (payloadSha) {
    const same = manifest.files.find((g) => g.sha256 === payloadSha && g !== f);
    if (same) return expectedPlain(same);
  }
  return undefined;
}

export function zfileVectors(): ManifestFile[] {
  return manifest.files.filter((f) => isZFileKind(f.kind));
}
