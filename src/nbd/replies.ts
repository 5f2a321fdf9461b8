/** Encoders for transmission replies: simple replies, structured chunk headers, error chunks. */
import * as P from './protocol.ts';

/** Writes a 20-byte structured reply chunk header at `at`. */
export function writeChunkHeader(dst: Buffer, at: number, flags: number, type: number, hi: number, lo: number, length: number): void {
  dst.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, at);
  dst.writeUInt16BE(flags, at + 4);
  dst.writeUInt16BE(type, at + 6);
  dst.writeUInt32BE(hi, at + 8);
  dst.writeUInt32BE(lo, at + 12);
  dst.writeUInt32BE(length, at + 16);
}

export function writeU64(dst: Buffer, at: number, value: number): void {
  dst.writeUInt32BE(Math.floor(value / 0x100000000), at);
  dst.writeUInt32BE(value >>> 0, at + 4);
}

export function writeSimpleReply(dst: Buffer, errno: number, hi: number, lo: number): void {
  dst.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
  dst.writeUInt32BE(errno, 4);
  dst.writeUInt32BE(hi, 8);
  dst.writeUInt32BE(lo, 12);
}

/** The header that precedes a successful READ's data: simple, or one OFFSET_DATA chunk with DONE. */
export function readReplyHeader(structured: boolean, hi: number, lo: number, offset: number, length: number): Buffer {
  if (!structured) {
    const h = Buffer.allocUnsafe(P.SIMPLE_REPLY_SIZE);
    writeSimpleReply(h, 0, hi, lo);
    return h;
  }
  const h = Buffer.allocUnsafe(P.STRUCTURED_HEADER_SIZE + 8);
  writeChunkHeader(h, 0, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, hi, lo, 8 + length);
  writeU64(h, P.STRUCTURED_HEADER_SIZE, offset);
  return h;
}

/** A failed request's reply: a simple reply with the errno, or an ERROR chunk (with DONE) carrying the message. */
export function errorReply(structured: boolean, hi: number, lo: number, errno: number, message: string): Buffer {
  if (!structured) {
    const reply = Buffer.allocUnsafe(P.SIMPLE_REPLY_SIZE);
    writeSimpleReply(reply, errno, hi, lo);
    return reply;
  }
  const text = Buffer.from(message.slice(0, 1024));
  const reply = Buffer.allocUnsafe(P.STRUCTURED_HEADER_SIZE + 6 + text.length);
  writeChunkHeader(reply, 0, P.REPLY_FLAG_DONE, P.REPLY_TYPE_ERROR, hi, lo, 6 + text.length);
  reply.writeUInt32BE(errno, 20);
  reply.writeUInt16BE(text.length, 24);
  text.copy(reply, 26);
  return reply;
}
