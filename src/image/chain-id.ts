/**
 * Layer identities of the OCI image spec: the diffID (digest of the uncompressed layer tar), the
 * chainID (one digest naming a layer together with everything below it), and the overlaybd layer
 * UUID derived from the chainID (formats.md §2.4), which lets a converted layer be matched to its
 * source stack.
 */
import { createHash } from 'node:crypto';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function checkSha256(d: string, what: string): string {
  if (!DIGEST.test(d)) throw new Error(`${what} ${JSON.stringify(d)} is not a sha256 digest (sha256:<64 lower-case hex>)`);
  return d;
}

/**
 * chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)), as the OCI
 * image spec (config.md, "Layer ChainID") defines it. Returns one chainID per layer.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const [i, d] of diffIds.entries()) {
    checkSha256(d, `diff_ids[${i}]`);
    out.push(i === 0 ? d : `sha256:${createHash('sha256').update(`${out[i - 1]} ${d}`).digest('hex')}`);
  }
  return out;
}

/**
 * The overlaybd layer UUID for a chainID: its first 32 hex characters as 8-4-4-4-12, upper-case
 * as the C++ tools store it after their parse-then-print round trip (formats.md §2.4,
 * aci overlaybd_builder.go chainIDtoUUID).
 */
export function chainIdToUuid(chainId: string): string {
  const hex = checkSha256(chainId, 'chainID').slice('sha256:'.length, 'sha256:'.length + 32).toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
