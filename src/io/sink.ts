import { open, type FileHandle } from 'node:fs/promises';

/**
 * A byte sink written mostly front to back, with positional overwrite of earlier bytes, which
 * the formats need for headers that are only known at the end (ZFile header overwrite, tar PAX size).
 * Sinks chain: the tar wrapper is a Sink over a file Sink, the ZFile writer one over that.
 */
export interface Sink {
  /** Bytes appended so far. */
  readonly position: number;
  /** Appends. The caller may reuse `data` once the promise settles. */
  write(data: Uint8Array): Promise<void>;
  /** Overwrites bytes already written, at an absolute offset < position. */
  pwrite(data: Uint8Array, offset: number): Promise<void>;
  /** Whether pwrite works (false for pipes such as stdout). */
  readonly seekable: boolean;
  /** Makes the written bytes durable (fsync for files). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** A file opened for writing (truncated) as a Sink. */
export class FileSink implements Sink {
  position = 0;
  readonly seekable = true;
  private constructor(private readonly fh: FileHandle, readonly name: string) {}

  static async create(path: string): Promise<FileSink> {
    return new FileSink(await open(path, 'w'), path);
  }

  async write(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.position + done);
      done += bytesWritten;
    }
    this.position += data.length;
  }

  async pwrite(data: Uint8Array, offset: number): Promise<void> {
    if (offset + data.length > this.position) throw new RangeError(`${this.name}: pwrite past the written end`);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  sync(): Promise<void> {
    return this.fh.sync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** A non-seekable stream (stdout) as a Sink: pwrite is refused. */
export class StreamSink implements Sink {
  position = 0;
  readonly seekable = false;
  constructor(private readonly stream: NodeJS.WritableStream, readonly name = 'stdout') {}

  write(data: Uint8Array): Promise<void> {
    this.position += data.length;
    const copy = Buffer.from(data); // the stream may hold the chunk after the promise settles
    return new Promise((resolve, reject) => {
      this.stream.write(copy, (err) => (err ? reject(err) : resolve()));
    });
  }

  async pwrite(): Promise<void> {
    throw new Error(`${this.name}: cannot overwrite bytes already written to a stream`);
  }

  async sync(): Promise<void> {}

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stream === process.stdout) resolve();
      else this.stream.end(() => resolve());
    });
  }
}

/** Collects everything in memory (tests, small blobs). */
export class MemorySink implements Sink {
  private chunks = new Uint8Array(0);
  position = 0;
  readonly seekable = true;

  async write(data: Uint8Array): Promise<void> {
    this.ensure(this.position + data.length);
    this.chunks.set(data, this.position);
    this.position += data.length;
  }

  async pwrite(data: Uint8Array, offset: number): Promise<void> {
    if (offset + data.length > this.position) throw new RangeError('pwrite past the written end');
    this.chunks.set(data, offset);
  }

  async sync(): Promise<void> {}
  async close(): Promise<void> {}

  bytes(): Uint8Array {
    return this.chunks.subarray(0, this.position);
  }

  private ensure(n: number): void {
    if (n <= this.chunks.length) return;
    const next = new Uint8Array(Math.max(n, this.chunks.length * 2, 4096));
    next.set(this.chunks.subarray(0, this.position));
    this.chunks = next;
  }
}
