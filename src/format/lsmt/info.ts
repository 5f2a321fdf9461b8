/** What `dadi layer info` reports about an opened layer: header fields, wrappers, extent counts. */
import { flagNames } from './header.ts';
import type { LsmtLayer } from './readonly.ts';

export interface LayerWrapperInfo {
  kind: string;
  [key: string]: unknown;
}

export interface LayerInfo {
  file: string;
  kind: string;
  wrappers: LayerWrapperInfo[];
  headerFlags: number;
  headerFlagNames: string[];
  trailerFlags?: number;
  uuid: string;
  parentUuid: string;
  message: string;
  virtualSize: number;
  segments: number;
  dataSegments: number;
  zeroedSegments: number;
  /** Bytes the live data extents hold. */
  dataBytes: number;
  /** The size of the file as stored (compressed, wrapped). */
  fileSize: number;
  /** The size of the LSMT stream inside the wrappers. */
  lsmtSize: number;
}

export function describeLayer(file: string, layer: LsmtLayer, fileSize: number, wrappers: LayerWrapperInfo[] = []): LayerInfo {
  const idx = layer.index;
  let zeroed = 0;
  let dataSectors = 0;
  for (let i = 0; i < idx.count; i++) {
    if (idx.zeroed[i]) zeroed++;
    else dataSectors += idx.length[i]!;
  }
  const info: LayerInfo = {
    file,
    kind: layer.kind,
    wrappers,
    headerFlags: layer.header.flags,
    headerFlagNames: flagNames(layer.header.flags),
    uuid: layer.uuid,
    parentUuid: layer.parentUuid,
    message: (layer.trailer ?? layer.header).userTag,
    virtualSize: layer.virtualSize,
    segments: idx.count,
    dataSegments: idx.count - zeroed,
    zeroedSegments: zeroed,
    dataBytes: dataSectors * 512,
    fileSize,
    lsmtSize: layer.data.size,
  };
  if (layer.trailer) info.trailerFlags = layer.trailer.flags;
  return info;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

export function formatLayerInfo(i: LayerInfo): string {
  const wrappers = i.wrappers.length === 0 ? 'none' : i.wrappers.map((w) => {
    if (w.kind === 'zfile') return `zfile(${String(w.algo)}, block ${Number(w.blockSize) / 1024}K, ${w.checksum ? 'crc' : 'no crc'})`;
    return w.kind;
  }).join(' > ');
  const lines = [
    `file:          ${i.file}`,
    `kind:          ${i.kind}`,
    `wrappers:      ${wrappers}`,
    `header flags:  ${hex(i.headerFlags)} (${i.headerFlagNames.join(', ')})`,
    ...(i.trailerFlags === undefined ? [] : [`trailer flags: ${hex(i.trailerFlags)}`]),
    `uuid:          ${i.uuid}`,
    `parent uuid:   ${i.parentUuid}`,
    `message:       ${i.message}`,
    `virtual size:  ${i.virtualSize}`,
    `segments:      ${i.segments} (${i.dataSegments} data, ${i.zeroedSegments} zeroed)`,
    `data bytes:    ${i.dataBytes}`,
    `lsmt size:     ${i.lsmtSize}`,
    `file size:     ${i.fileSize}`,
  ];
  return lines.join('\n') + '\n';
}
