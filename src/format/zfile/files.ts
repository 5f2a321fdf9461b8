/**
 * Whole-file ZFile conversion for the CLI: compress a file or stdin into a ZFile (optionally
 * tar-wrapped), and decompress a ZFile (raw or tar-wrapped, detected) back to plain bytes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FormatError } from '../../errors.ts';
import { FileSource } from '../../io/file.ts';
import { FileSink, StreamSink, type Sink } from '../../io/sink.ts';
import type { ByteSource } from '../../io/types.ts';
import { TarWrapSink } from '../tar/writer.ts';
import { openZFile } from './open.ts';
import type { ZFileReader } from './reader.ts';
import { parallelCopyOut } from './parallel-decompress.ts';
import { ZFileWriter, type ZFileWriterOptions } from './writer.ts';

const CHUNK = 4 << 20;
/** Below this size decompressing on worker threads costs more than it saves. */
const PARALLEL_BYTES = 16 << 20;

export interface CompressOptions extends ZFileWriterOptions {
  tar?: boolean;
}

/** Compresses `input` (a path, or '-' for stdin) into the ZFile `output` (a path, or '-' for stdout). */
export async function compressFile(input: string, output: string, opts: CompressOptions): Promise<void> {
  if (opts.tar && output === '-') {
    throw new Error('--tar needs a file to write to: the tar header holds the size, which is only known at the end');
  }
  const stream = input === '-' ? process.stdin : createReadStream(input, { highWaterMark: CHUNK });
  // Open the input first so a missing file fails before the output is created.
  if (input !== '-') await new Promise<void>((resolve, reject) => { stream.once('open', () => resolve()); stream.once('error', reject); });
  let sink: Sink = output === '-' ? new StreamSink(process.stdout) : await FileSink.create(output);
  if (opts.tar) sink = new TarWrapSink(sink);
  const writer = await ZFileWriter.create(sink, opts);
  try {
    for await (const chunk of stream) await writer.write(chunk as Buffer);
  } catch (err) {
    if (input !== '-') (stream as ReturnType<typeof createReadStream>).destroy();
    await writer.close().catch(() => undefined);
    throw err;
  }
  await writer.close();
}

/**
 * Decompresses the ZFile `input` (path or '-') to `output` (path or '-'). Block CRCs are checked
 * whenever the file has them; `verify` additionally insists that it has them.
 */
export async function decompressFile(input: string, output: string, opts: { verify?: boolean } = {}): Promise<void> {
  let spoolDir: string | undefined;
  let path = input;
  if (input === '-') {
    // Random access is needed (the index is at the end), so stdin is spooled to a temporary file.
    spoolDir = await mkdtemp(join(tmpdir(), 'dadi-zfile-'));
    path = join(spoolDir, 'stdin.zfile');
    await pipeline(process.stdin, createWriteStream(path));
  }
  try {
    const src = await FileSource.open(path);
    const name = input === '-' ? 'stdin' : input;
    const named: ByteSource = { size: src.size, name, read: (d, o) => src.read(d, o), close: () => src.close() };
    const reader = await openZFile(named);
    try {
      if (opts.verify && !reader.info.verify) {
        throw new FormatError(name, 88, 'the file carries no per-block checksums, so --verify cannot check it');
      }
      const sink: Sink = output === '-' ? new StreamSink(process.stdout) : await FileSink.create(output);
      try {
        if (reader.size >= PARALLEL_BYTES) await parallelCopyOut(path, name, reader.size, sink);
        else await copyOut(reader, sink);
      } finally {
        await sink.close();
      }
    } finally {
      await reader.close();
    }
  } finally {
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}

/** Streams the decompressed bytes, decompressing the next chunk while the previous is written. */
async function copyOut(reader: ZFileReader, sink: Sink): Promise<void> {
  const bufs = [new Uint8Array(CHUNK), new Uint8Array(CHUNK)];
  let pendingWrite: Promise<void> = Promise.resolve();
  for (let off = 0, i = 0; off < reader.size; off += CHUNK, i ^= 1) {
    const buf = bufs[i]!;
    const n = await reader.read(buf, off);
    await pendingWrite;
    pendingWrite = sink.write(buf.subarray(0, n));
  }
  await pendingWrite;
}
