const UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses `4096`, `4K`, `64M`, `10G`, `1T` (binary units, optional `iB`/`B` suffix). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a size: ${JSON.stringify(text)} (expected e.g. 4096, 4K, 64M, 10G)`);
  const value = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value)) throw new Error(`size too large: ${text}`);
  return value;
}

export function formatSize(bytes: number): string {
  for (const [u, f] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= f) return `${(bytes / f).toFixed(bytes % f === 0 ? 0 : 1)}${u}iB`;
  }
  return `${bytes}B`;
}
