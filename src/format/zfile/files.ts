/**
 * Whole-file ZFile conversion for the CLI: compress a file or stdin into a ZFile (optionally
 * tar-wrapped), and decompress a ZFile (raw or tar-wrapped, detected) back to plain bytes.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FormatError } from '../../errors.ts';
import { FileSource } from '../../io/file.ts';
import { FileSink, StreamSink, type Sink } from '../../io/sink.ts';
import { NamedSource } from '../../io/filter.ts';
import { TarWrapSink } from '../tar/writer.ts';
import { openZFile } from './open.ts';
import type { ZFileReader } from './reader.ts';
import { parallelCopyOut, parallelDecompressToFile } from './parallel-decompress.ts';
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
  // Open the input first so a missing file fails before the output is created.
  const file = input === '-' ? undefined : await open(input, 'r');
  try {
    const st = await file?.stat();
    let sink: Sink = output === '-' ? new StreamSink(process.stdout) : await FileSink.create(output);
    if (opts.tar) sink = new TarWrapSink(sink);
    const writer = await ZFileWriter.create(sink, opts);
    try {
      // A regular file is read by the compressing workers themselves; pipes and devices stream through here.
      if (file && st!.isFile()) await writer.writeFromFile(file.fd, 0, st!.size);
      else for await (const chunk of file ? file.createReadStream({ highWaterMark: CHUNK, autoClose: false }) : process.stdin) await writer.write(chunk as Buffer);
    } catch (err) {
      await writer.close().catch(() => undefined);
      throw err;
    }
    await writer.close();
  } finally {
    await file?.close();
  }
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
    const reader = await openZFile(new NamedSource(src, name));
    try {
      if (opts.verify && !reader.info.verify) {
        throw new FormatError(name, 88, 'the file carries no per-block checksums, so --verify cannot check it');
      }
      if (output !== '-' && reader.size >= PARALLEL_BYTES) {
        const out = await open(output, 'w');
        try {
          await parallelDecompressToFile(path, name, reader.size, out.fd);
        } finally {
          await out.close();
        }
      } else {
        const sink: Sink = output === '-' ? new StreamSink(process.stdout) : await FileSink.create(output);
        try {
          if (reader.size >= PARALLEL_BYTES) await parallelCopyOut(path, name, reader.size, sink);
          else await copyOut(reader, sink);
        } finally {
          await sink.close();
        }
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
