/**
 * The overlaybd per-device config (`block/config.v1.json`, formats.md §6) written for every dadi
 * layer snapshot and writable disk, in the form overlaybd's snapshotter writes it: `repoBlobUrl`,
 * `lowers` bottom first (a remote blob as digest + size + its snapshot's fs dir, a local layer as
 * its dir), `upper` for a writable disk, `resultFile`. dadi attaches from its metadata; the file
 * keeps the snapshot directory readable by overlaybd's tools and by `dadi serve config.v1.json`.
 */
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface ConfigLower { digest?: string; size?: number; dir: string }

export interface OverlaybdDeviceConfig {
  repoBlobUrl: string;
  lowers: ConfigLower[];
  upper?: { index: string; data: string };
  resultFile: string;
}

export async function writeDeviceConfig(path: string, cfg: OverlaybdDeviceConfig): Promise<void> {
  const tmp = join(dirname(path), `.config.v1.json.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(cfg, null, 2) + '\n');
  await rename(tmp, path);
}
