/**
 * The fixed newstyle handshake and option haggling: everything a connection says before the
 * transmission phase. Oldstyle is never offered; non-fixed clients may only send EXPORT_NAME.
 * Protocol violations throw HandshakeRefused and the caller drops the connection.
 */
import type { DiskCaps } from '../io/types.ts';
import * as P from './protocol.ts';

export interface HandshakeIO {
  /** Exactly n bytes; rejects when the connection ends first. */
  read(n: number): Promise<Buffer>;
  write(bytes: Uint8Array): void;
}

export interface ExportInfo {
  name: string;
  description: string;
  size: number;
  writable: boolean;
  /** What the disk declares it can do; the transmission flags advertise exactly that. */
  caps: DiskCaps;
}

/** What was agreed for the transmission phase. */
export interface Session {
  structured: boolean;
  /** base:allocation was selected, so BLOCK_STATUS is allowed. */
  metaContext: boolean;
  /** The client asked for our block size constraints, so it must honour them. */
  blockSizeAgreed: boolean;
  transmissionFlags: number;
}

/** The client broke a MUST of the handshake, or asked for something that ends the session. */
export class HandshakeRefused extends Error {
  override readonly name = 'HandshakeRefused';
}

/** Largest option payload we read; larger ones are a denial of service, not a real request. */
const MAX_OPTION_LENGTH = 64 * 1024;
/** Options per connection before we hang up on a client that never gets to transmission. */
const MAX_OPTIONS = 1024;

/**
 * Whether a FLUSH on one connection makes the writes of every other connection durable: all
 * connections share one Disk object in this process with no per-connection cache, and
 * Disk.flush() persists every acknowledged write, so multi-conn is safe.
 */
export function transmissionFlags(exp: ExportInfo, structured: boolean): number {
  let flags = P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_CACHE | P.TFLAG_CAN_MULTI_CONN;
  if (!exp.writable) flags |= P.TFLAG_READ_ONLY;
  else {
    if (exp.caps.fua) flags |= P.TFLAG_SEND_FUA;
    if (exp.caps.trim) flags |= P.TFLAG_SEND_TRIM;
    if (exp.caps.zero) flags |= P.TFLAG_SEND_WRITE_ZEROES;
  }
  if (structured) flags |= P.TFLAG_SEND_DF;
  return flags;
}

/** Runs the handshake; returns the session, or null when the client ended it cleanly (ABORT). */
export async function negotiate(io: HandshakeIO, exp: ExportInfo, isShuttingDown: () => boolean): Promise<Session | null> {
  const greeting = Buffer.alloc(18);
  greeting.writeBigUInt64BE(P.NBDMAGIC, 0);
  greeting.writeBigUInt64BE(P.IHAVEOPT, 8);
  greeting.writeUInt16BE(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES, 16);
  io.write(greeting);

  const clientFlags = (await io.read(4)).readUInt32BE(0);
  if ((clientFlags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES)) !== 0) {
    throw new HandshakeRefused(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const fixed = (clientFlags & P.FLAG_C_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (clientFlags & P.FLAG_C_NO_ZEROES) !== 0;
  let structured = false;
  let metaContext = false;

  for (let count = 0; ; count++) {
    if (count >= MAX_OPTIONS) throw new HandshakeRefused(`more than ${MAX_OPTIONS} options`);
    const header = await io.read(16);
    if (header.readBigUInt64BE(0) !== P.IHAVEOPT) throw new HandshakeRefused('option without IHAVEOPT magic');
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_OPTION_LENGTH) throw new HandshakeRefused(`option ${option} with ${length} bytes of data`);
    if (option === P.OPT_EXPORT_NAME) {
      const name = (await io.read(length)).toString('utf8');
      if (!nameMatches(exp, name)) throw new HandshakeRefused(`EXPORT_NAME of unknown export ${JSON.stringify(name)}`);
      const flags = transmissionFlags(exp, structured);
      const reply = Buffer.alloc(noZeroes ? 10 : 134);
      reply.writeBigUInt64BE(BigInt(exp.size), 0);
      reply.writeUInt16BE(flags, 8);
      io.write(reply);
      return { structured, metaContext, blockSizeAgreed: false, transmissionFlags: flags };
    }
    if (!fixed) throw new HandshakeRefused(`option ${option} from a client without fixed newstyle`);
    const data = await io.read(length);
    const reply = (type: number, payload?: Uint8Array | string): void => io.write(optionReply(option, type, payload));

    if (isShuttingDown() && option !== P.OPT_ABORT) {
      reply(P.REP_ERR_SHUTDOWN, 'server is shutting down');
      continue;
    }
    switch (option) {
      case P.OPT_ABORT:
        reply(P.REP_ACK);
        return null;
      case P.OPT_LIST: {
        if (length !== 0) { reply(P.REP_ERR_INVALID, 'LIST takes no data'); break; }
        const name = Buffer.from(exp.name);
        const desc = Buffer.from(exp.description);
        const payload = Buffer.alloc(4 + name.length + desc.length);
        payload.writeUInt32BE(name.length, 0);
        name.copy(payload, 4);
        desc.copy(payload, 4 + name.length);
        reply(P.REP_SERVER, payload);
        reply(P.REP_ACK);
        break;
      }
      case P.OPT_STRUCTURED_REPLY:
        if (length !== 0) reply(P.REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        else if (structured) reply(P.REP_ERR_INVALID, 'structured replies already negotiated');
        else { structured = true; reply(P.REP_ACK); }
        break;
      case P.OPT_INFO:
      case P.OPT_GO: {
        const req = parseInfoRequest(data);
        if (typeof req === 'string') { reply(P.REP_ERR_INVALID, req); break; }
        if (!nameMatches(exp, req.name)) { reply(P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`); break; }
        const flags = transmissionFlags(exp, structured);
        for (const info of infoReplies(exp, req.name, req.infos, flags)) reply(P.REP_INFO, info);
        reply(P.REP_ACK);
        if (option === P.OPT_GO) {
          return { structured, metaContext, blockSizeAgreed: req.infos.includes(P.INFO_BLOCK_SIZE), transmissionFlags: flags };
        }
        break;
      }
      case P.OPT_LIST_META_CONTEXT:
      case P.OPT_SET_META_CONTEXT: {
        if (!structured) { reply(P.REP_ERR_INVALID, 'negotiate structured replies first'); break; }
        const req = parseMetaRequest(data);
        if (typeof req === 'string') { reply(P.REP_ERR_INVALID, req); break; }
        if (!nameMatches(exp, req.name)) { reply(P.REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`); break; }
        const listing = option === P.OPT_LIST_META_CONTEXT;
        const selected = listing
          ? req.queries.length === 0 || req.queries.some((q) => q === 'base:' || q === P.META_BASE_ALLOCATION)
          : req.queries.includes(P.META_BASE_ALLOCATION);
        if (!listing) metaContext = selected;
        if (selected) {
          const name = Buffer.from(P.META_BASE_ALLOCATION);
          const payload = Buffer.alloc(4 + name.length);
          payload.writeUInt32BE(listing ? 0 : P.META_BASE_ALLOCATION_ID, 0);
          name.copy(payload, 4);
          reply(P.REP_META_CONTEXT, payload);
        }
        reply(P.REP_ACK);
        break;
      }
      default:
        reply(P.REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

function nameMatches(exp: ExportInfo, name: string): boolean {
  return name === '' || name === exp.name;
}

function optionReply(option: number, type: number, payload?: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const out = Buffer.alloc(20 + (body?.length ?? 0));
  out.writeBigUInt64BE(P.OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type, 12);
  out.writeUInt32BE(body?.length ?? 0, 16);
  if (body) out.set(body, 20);
  return out;
}

/** INFO/GO data: u32 name length, name, u16 count, count x u16 info types. */
function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | string {
  if (data.length < 6) return 'INFO/GO data too short';
  const nameLength = data.readUInt32BE(0);
  if (nameLength > P.MAX_STRING || 4 + nameLength + 2 > data.length) return 'export name length out of range';
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return 'INFO/GO length does not match its request count';
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLength + 2 * i));
  return { name, infos };
}

function* infoReplies(exp: ExportInfo, requestedName: string, infos: number[], flags: number): Generator<Buffer> {
  const exportInfo = Buffer.alloc(12);
  exportInfo.writeUInt16BE(P.INFO_EXPORT, 0);
  exportInfo.writeBigUInt64BE(BigInt(exp.size), 2);
  exportInfo.writeUInt16BE(flags, 10);
  yield exportInfo;
  if (infos.includes(P.INFO_NAME)) yield stringInfo(P.INFO_NAME, exp.name || requestedName);
  if (infos.includes(P.INFO_DESCRIPTION) && exp.description) yield stringInfo(P.INFO_DESCRIPTION, exp.description);
  // Always sent: clients that did not ask may still use it, and we only enforce it on those that did.
  const sizes = Buffer.alloc(14);
  sizes.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
  sizes.writeUInt32BE(P.MIN_BLOCK_SIZE, 2);
  sizes.writeUInt32BE(P.PREFERRED_BLOCK_SIZE, 6);
  sizes.writeUInt32BE(P.MAX_BLOCK_SIZE, 10);
  yield sizes;
}

function stringInfo(type: number, text: string): Buffer {
  const s = Buffer.from(text);
  const out = Buffer.alloc(2 + s.length);
  out.writeUInt16BE(type, 0);
  s.copy(out, 2);
  return out;
}

/** META_CONTEXT data: u32 name length, name, u32 query count, then per query u32 length + query. */
function parseMetaRequest(data: Buffer): { name: string; queries: string[] } | string {
  if (data.length < 8) return 'META_CONTEXT data too short';
  const nameLength = data.readUInt32BE(0);
  if (nameLength > P.MAX_STRING || 4 + nameLength + 4 > data.length) return 'export name length out of range';
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt32BE(4 + nameLength);
  const queries: string[] = [];
  let at = 8 + nameLength;
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return 'META_CONTEXT query list truncated';
    const len = data.readUInt32BE(at);
    if (len > P.MAX_STRING || at + 4 + len > data.length) return 'META_CONTEXT query length out of range';
    queries.push(data.toString('utf8', at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== data.length) return 'META_CONTEXT data has trailing bytes';
  return { name, queries };
}
