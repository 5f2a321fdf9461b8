/**
 * Opening a layer blob whatever its wrapping, detected from its bytes as upstream does
 * (`open_lower_layer`): a tar wrapper (single member), a ZFile, then the LSMT layer itself, nested
 * in any order (tar(zfile(lsmt)), zfile(lsmt), tar(lsmt), plain LSMT).
 */
import { FormatError } from '../errors.ts';
import { FileSource } from '../io/file.ts';
import type { ByteSource } from '../io/types.ts';
import { hasLsmtMagic } from './lsmt/header.ts';
import { openReadOnlyLayer, openWritablePairReadOnly, type LsmtLayer } from './lsmt/readonly.ts';
import { isTar, openTarPayload } from './tar/reader.ts';
import { isZFile, ZFileReader } from './zfile/reader.ts';
import type { ZFileAlgo } from './zfile/header.ts';

export { openWritablePairReadOnly };

export type LayerWrapper =
  | { kind: 'tar'; payloadSize: number }
  | { kind: 'zfile'; algo: ZFileAlgo; blockSize: number; checksum: boolean; compressedSize: number };

export type DetectedLayer = LsmtLayer & { readonly wrappers: LayerWrapper[] };

/** Wrappers deeper than this are refused (a hostile blob could nest tars for ever). */
const MAX_WRAPPERS = 4;
const PROBE = 512;

function describeHead(head: Uint8Array): string {
  const hex = Buffer.from(head.subarray(0, 16)).toString('hex').replace(/(..)/g, '$1 ').trim();
  const text = Buffer.from(head.subarray(0, 16)).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `first bytes ${hex} ("${text}")`;
}

/** Opens a layer from its bytes; the layer owns `src` and closes it. */
export async function openLayerSource(src: ByteSource, name: string): Promise<DetectedLayer> {
  const wrappers: LayerWrapper[] = [];
  let cur = src;
  try {
    for (;;) {
      const head = new Uint8Array(Math.min(PROBE, cur.size));
      const n = await cur.read(head, 0);
      const h = head.subarray(0, n);
      const what = wrappers.length === 0 ? name : `${name} (inside ${wrappers.map((w) => w.kind).join(' > ')})`;
      if (wrappers.length > MAX_WRAPPERS) throw new FormatError(what, 0, `more than ${MAX_WRAPPERS} nested wrappers`);
      if (hasLsmtMagic(h)) {
        const layer = await openReadOnlyLayer(cur, what);
        return Object.assign(layer, { wrappers });
      }
      if (h.length >= PROBE && isTar(h)) {
        cur = await openTarPayload(cur);
        wrappers.push({ kind: 'tar', payloadSize: cur.size });
        continue;
      }
      if (isZFile(h)) {
        const z = await ZFileReader.open(cur);
        const info = z.info;
        wrappers.push({ kind: 'zfile', algo: info.algo, blockSize: info.blockSize, checksum: info.verify, compressedSize: info.compressedSize });
        cur = z;
        continue;
      }
      throw new FormatError(what, 0, `not a layer: neither tar, ZFile nor LSMT; ${n === 0 ? 'the file is empty' : describeHead(h)}`);
    }
  } catch (e) {
    await cur.close().catch(() => {});
    throw e;
  }
}

/** Opens a layer file (plain, ZFile-compressed and/or tar-wrapped). */
export async function openLayer(path: string): Promise<DetectedLayer> {
  return openLayerSource(await FileSource.open(path), path);
}
