/** Checks a transmission request against the protocol and the export before it reaches the disk. */
import type { Disk } from '../io/types.ts';
import type { Session } from './handshake.ts';
import * as P from './protocol.ts';

/** The command flags each command accepts (FUA is accepted everywhere, as the spec asks). */
const ALLOWED_FLAGS: number[] = [];
ALLOWED_FLAGS[P.CMD_READ] = P.CMD_FLAG_FUA | P.CMD_FLAG_DF;
ALLOWED_FLAGS[P.CMD_WRITE] = P.CMD_FLAG_FUA;
ALLOWED_FLAGS[P.CMD_FLUSH] = P.CMD_FLAG_FUA;
ALLOWED_FLAGS[P.CMD_TRIM] = P.CMD_FLAG_FUA;
ALLOWED_FLAGS[P.CMD_CACHE] = P.CMD_FLAG_FUA;
ALLOWED_FLAGS[P.CMD_WRITE_ZEROES] = P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE;
ALLOWED_FLAGS[P.CMD_BLOCK_STATUS] = P.CMD_FLAG_FUA | P.CMD_FLAG_REQ_ONE;

/**
 * Why a request must be refused, as [NBD errno, message for the client], or null when it may run.
 * Flags not documented for the command, unknown commands and misaligned requests (once the client
 * asked for our block sizes) are EINVAL; writes on a read-only export EPERM; writes past the end
 * ENOSPC; other requests past the end EINVAL.
 */
export function refusal(type: number, flags: number, offset: number, length: number, session: Session, disk: Disk): [number, string] | null {
  const allowed = ALLOWED_FLAGS[type];
  if (allowed === undefined) return [P.EINVAL, `unknown command ${type}`];
  const name = P.commandName(type);
  if ((flags & ~allowed) !== 0 || ((flags & P.CMD_FLAG_DF) !== 0 && !session.structured)) {
    return [P.EINVAL, `${name}: unsupported flags 0x${flags.toString(16)}`];
  }
  if (type === P.CMD_FLUSH) return offset === 0 && length === 0 ? null : [P.EINVAL, 'FLUSH with nonzero offset or length'];
  const writes = type === P.CMD_WRITE || type === P.CMD_TRIM || type === P.CMD_WRITE_ZEROES;
  if (writes && !disk.writable) return [P.EPERM, `${name} on a read-only export`];
  if ((type === P.CMD_TRIM && !disk.caps.trim) || (type === P.CMD_WRITE_ZEROES && !disk.caps.zero)) {
    return [P.EINVAL, `${name}: the export does not support it`];
  }
  if (type === P.CMD_BLOCK_STATUS && !session.metaContext) return [P.EINVAL, 'BLOCK_STATUS without a negotiated metadata context'];
  if (length === 0) return [P.EINVAL, `${name} of zero bytes`];
  if ((type === P.CMD_READ || type === P.CMD_WRITE) && length > P.MAX_BLOCK_SIZE) {
    return [P.EINVAL, `${name} of ${length} bytes exceeds the maximum ${P.MAX_BLOCK_SIZE}`];
  }
  if (session.blockSizeAgreed && (offset % P.MIN_BLOCK_SIZE !== 0 || length % P.MIN_BLOCK_SIZE !== 0)) {
    return [P.EINVAL, `${name} at ${offset}+${length} is not aligned to ${P.MIN_BLOCK_SIZE} bytes`];
  }
  if (offset + length > disk.size) {
    return [writes ? P.ENOSPC : P.EINVAL, `${name} at ${offset}+${length} is beyond the end of the device (${disk.size})`];
  }
  return null;
}
