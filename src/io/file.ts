import { open, type FileHandle } from 'node:fs/promises';
import type { ByteSource } from './types.ts';

/** A local file as a ByteSource. Size is taken once, at open. */
export class FileSource implements ByteSource {
  private constructor(private readonly fh: FileHandle, readonly size: number, readonly name: string) {}

  static async open(path: string): Promise<FileSource> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      return new FileSource(fh, st.size, path);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(dst: Uint8Array, offset: number): Promise<number> {
    let done = 0;
    const want = Math.max(0, Math.min(dst.length, this.size - offset));
    while (done < want) {
      const { bytesRead } = await this.fh.read(dst, done, want - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
