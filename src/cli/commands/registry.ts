/** `dadi registry serve`: the embedded OCI registry, until SIGTERM/SIGINT. */
import type { Command } from 'commander';
import { required } from '../required.ts';

export function register(program: Command): void {
  const registry = program.command('registry').description('the embedded OCI registry');
  registry
    .command('serve')
    .description('serve an OCI distribution registry from a directory')
    .option('--root <dir>', 'storage directory (required; created if missing)')
    .option('--listen <addr>', 'HOST:PORT, or :PORT for all interfaces (port 0 picks a free one)', '127.0.0.1:5000')
    .option('--auth <mode>', 'require credentials: basic:USER:PASS, or token:USER:PASS (bearer tokens from GET /token)')
    .option('--token-lifetime <seconds>', 'token validity in token mode', '300')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (needs --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .action(async (opts: { root?: string; listen: string; auth?: string; tokenLifetime: string; tlsCert?: string; tlsKey?: string }) => {
      const { startRegistryServer } = await import('../../registry/server/server.ts');
      const { parseAuthOption } = await import('../../registry/server/auth.ts');
      const { host, port } = parseListen(opts.listen);
      let auth = opts.auth ? parseAuthOption(opts.auth) : undefined;
      if (auth?.kind === 'token') {
        const lifetime = Number(opts.tokenLifetime);
        if (!Number.isFinite(lifetime) || lifetime <= 0) throw new Error(`invalid --token-lifetime ${opts.tokenLifetime}`);
        auth = { ...auth, tokenLifetimeSeconds: lifetime };
      }
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new Error('--tls-cert and --tls-key go together');
      const { readFile } = await import('node:fs/promises');
      const tls = opts.tlsCert && opts.tlsKey ? { cert: await readFile(opts.tlsCert), key: await readFile(opts.tlsKey) } : undefined;
      const { log } = await import('../../util/log.ts');
      const server = await startRegistryServer({ root: required(opts.root, '--root'), host, port, ...(auth ? { auth } : {}), ...(tls ? { tls } : {}),
        onRequest: (e) => log.debug({ method: e.method, url: e.url, status: e.status }, 'registry request') });
      process.stdout.write(`${server.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void server.stop().then(resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}

/** `HOST:PORT`, `[V6]:PORT`, `:PORT` (all interfaces) or `PORT`. */
export function parseListen(addr: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*))?:?(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`invalid --listen "${addr}": expected HOST:PORT`);
  const host = m[1] ?? (m[2] === undefined || m[2] === '' ? (addr.includes(':') ? '0.0.0.0' : '127.0.0.1') : m[2]);
  return { host, port };
}
