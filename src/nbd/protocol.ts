/**
 * NBD protocol numbers (fixed newstyle handshake, structured replies, block status), as given by
 * the NetworkBlockDevice project's doc/proto.md, and the map from DiskError codes to NBD errnos.
 */
import { diskErrorCode, type DiskErrorCode } from '../errors.ts';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// handshake flags (server) and client flags
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// transmission flags
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_SEND_DF = 1 << 7;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_CACHE = 1 << 10;

// options
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

// option replies
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_ERR_UNSUP = 0x80000001;
export const REP_ERR_POLICY = 0x80000002;
export const REP_ERR_INVALID = 0x80000003;
export const REP_ERR_UNKNOWN = 0x80000006;
export const REP_ERR_SHUTDOWN = 0x80000007;
export const REP_ERR_TOO_BIG = 0x80000009;

// NBD_REP_INFO types
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// commands and command flags
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;

// structured reply chunks
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 0x8001;

// base:allocation
export const META_BASE_ALLOCATION = 'base:allocation';
/** The id this server gives base:allocation (any nonzero id is allowed; one context, one id). */
export const META_BASE_ALLOCATION_ID = 1;
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

// errno values defined by the protocol
export const EPERM = 1;
export const EIO = 5;
export const ENOMEM = 12;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const ENOTSUP = 95;
export const ESHUTDOWN = 108;

/** Block size constraints this server advertises and, once a client asked for them, enforces. */
export const MIN_BLOCK_SIZE = 512;
export const PREFERRED_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 32 * 1024 * 1024;

/** Sizes of the fixed-length messages. */
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;
/** The protocol's cap on strings (export names, descriptions, error messages). */
export const MAX_STRING = 4096;

const ERRNO: Record<DiskErrorCode, number> = {
  EIO, EROFS: EPERM, EINVAL, ENOSPC, EOVERFLOW, EPERM, ENOTSUP,
};

/** The NBD errno a client sees for a failed disk operation; anything unexpected is EIO. */
export function nbdErrno(err: unknown): number {
  return ERRNO[diskErrorCode(err)] ?? EIO;
}

const COMMAND_NAMES = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'];
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}
