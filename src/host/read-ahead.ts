/**
 * Read-ahead of an attached export: of the block device and, for nbdfuse, of the FUSE file's
 * backing device info under it. Each level would otherwise read ahead on its own, and every block
 * read ahead of a lazily fetched image may cost a registry round trip nobody asked for.
 */
import { stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { log } from '../util/log.ts';
import type { Attachment } from './attach.ts';

export async function setReadAhead(device: string, a: Attachment | undefined, kb: number): Promise<void> {
  await writeFile(`/sys/block/${basename(device)}/queue/read_ahead_kb`, String(kb));
  if (a?.kind === 'nbdfuse') {
    const st = await stat(join(a.fuseDir, 'nbd'));
    // The FUSE mount's bdi is named by the mount's device number (major:minor).
    const bdi = `/sys/class/bdi/${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}/read_ahead_kb`;
    await writeFile(bdi, String(kb)).catch((err: Error) => log.debug({ bdi, err: err.message }, 'setting nbdfuse read-ahead'));
  }
}
