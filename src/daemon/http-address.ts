/**
 * The address of the daemon's status/metrics HTTP endpoint (`metricsAddress`): a TCP
 * `HOST:PORT` (`tcp:HOST:PORT`, `[::1]:PORT`) or a unix socket path (`unix:PATH`, or any path
 * starting with `/` or `.`). Shared by the daemon that listens and by `dadi image info --daemon`.
 */

export type HttpAddress = { unix: string } | { host: string; port: number };

export function parseHttpAddress(text: string): HttpAddress {
  const t = text.trim();
  if (t.startsWith('unix:') && t.length > 5) return { unix: t.slice(5) };
  if (t.startsWith('/') || t.startsWith('./') || t.startsWith('../')) return { unix: t };
  const m = /^(?:tcp:)?(?:\[([^\]]+)\]|([^:/\s]+)):(\d{1,5})$/.exec(t);
  if (m && Number(m[3]) <= 65535) return { host: m[1] ?? m[2]!, port: Number(m[3]) };
  throw new Error(`not an HTTP listen address: ${JSON.stringify(text)} (expected HOST:PORT, tcp:HOST:PORT, unix:PATH or an absolute socket path)`);
}

export function formatHttpAddress(a: HttpAddress): string {
  return 'unix' in a ? `unix:${a.unix}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
