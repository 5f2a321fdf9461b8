/** The steps `dadi demo` reports, one event each (one JSON line each with --json). */

export interface LayerBuilt { title: string; entries: number; tarBytes: number; gzipBytes: number; diffId: string }

export type DemoEvent =
  | { step: 'registry'; url: string; root: string; seconds: number }
  | { step: 'build'; reference: string; manifest: string; layers: LayerBuilt[]; bytes: number; seconds: number }
  | { step: 'convert-layer'; layer: number; how: string; blobDigest: string; sourceBytes: number; blobBytes: number; seconds: number }
  | { step: 'convert'; status: 'done'; reference: string; manifest: string; layers: number; bytesIn: number; bytesOut: number; seconds: number }
  | { step: 'attach'; status: 'done'; reference: string; layers: number; diskSize: number; imageBytes: number;
    fetchedBytes: number; fetchedRequests: number; layerBytes: number; seconds: number }
  | { step: 'mount'; status: 'done'; mountPoint: string; device: string; method: string; fsType: string; seconds: number }
  | { step: 'list'; entries: number; root: string[]; matches: boolean; seconds: number; via: 'mount' | 'userspace' }
  | { step: 'read'; path: string; firstLine: string; bytes: number; matches: boolean; seconds: number }
  | { step: 'fetched'; bytes: number; requests: number; imageBytes: number;
    /** What reads after the attach (mount, listing, file read) fetched. */
    afterAttach: { bytes: number; requests: number }; cacheHits: number; cacheMisses: number;
    layers: Array<{ layer: number; blobBytes: number; fetchedBytes: number; requests: number }> }
  | { step: 'skipped'; what: 'mount'; reason: string; missing?: string[] }
  | { step: 'cleanup'; undone: string[]; kept?: string; seconds: number }
  | { step: 'done'; ok: boolean; seconds: number; skipped: string[]; problems: string[] };

export type DemoStep = DemoEvent['step'];
