/** Opening a ZFile whose bytes may be tar-wrapped, as blobs from registries usually are. */
import { FormatError } from '../../errors.ts';
import type { ByteSource } from '../../io/types.ts';
import { isTar, openTarPayload } from '../tar/reader.ts';
import { isZFile, ZFileReader } from './reader.ts';

/** Opens a ZFile, unwrapping a tar wrapper when the bytes show one; fails clearly on anything else. */
export async function openZFile(src: ByteSource, opts: { verify?: boolean } = {}): Promise<ZFileReader> {
  const head = new Uint8Array(Math.min(512, src.size));
  await src.read(head, 0);
  let payload = src;
  if (isTar(head)) {
    payload = await openTarPayload(src);
    head.fill(0);
    await payload.read(head.subarray(0, Math.min(head.length, payload.size)), 0);
  }
  if (!isZFile(head)) throw new FormatError(src.name ?? 'input', payload === src ? 0 : 1536, 'not a ZFile (no ZFile magic)');
  return ZFileReader.open(payload, opts);
}
