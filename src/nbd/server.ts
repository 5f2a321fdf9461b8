/**
 * The NBD server: one export (any Disk) on a unix socket or TCP listener, shared by every
 * connection. close() stops accepting, lets in-flight requests finish, and closes connections;
 * flushing and closing the Disk is left to the owner of the Disk.
 *
 * The Disk may still be opening (a promise): the server listens at once and holds the
 * connections that arrive until it is ready (the client waits for the greeting), so a client
 * such as nbdfuse can start while the image's layers are still being fetched.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rename, rm, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Disk } from '../io/types.ts';
import { log as defaultLog } from '../util/log.ts';
import { sharedPool, type BufferPool } from './buffer-pool.ts';
import { NbdConnection } from './connection.ts';

export type ListenAddress = { unix: string } | { host: string; port: number };

/** Parses `unix:PATH` or `tcp:HOST:PORT` (`tcp:[::1]:PORT` for IPv6). */
export function parseListenAddress(text: string): ListenAddress {
  if (text.startsWith('unix:') && text.length > 5) return { unix: text.slice(5) };
  const m = /^tcp:(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (m) {
    const port = Number(m[3]);
    if (port <= 65535) return { host: m[1] ?? m[2]!, port };
  }
  throw new Error(`not a listen address: ${JSON.stringify(text)} (expected unix:PATH or tcp:HOST:PORT)`);
}

export function formatListenAddress(a: ListenAddress): string {
  return 'unix' in a ? `unix:${a.unix}` : `tcp:${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** An NBD URI for the address (as nbdinfo, nbdcopy, qemu and fio take it). */
export function nbdUri(a: ListenAddress, exportName = ''): string {
  const name = encodeURIComponent(exportName);
  return 'unix' in a ? `nbd+unix:///${name}?socket=${a.unix}` : `nbd://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/${name}`;
}

export interface NbdServerOptions {
  exportName?: string;
  description?: string;
  log?: Logger;
  pool?: BufferPool;
  maxInFlightBytes?: number;
  holeThreshold?: number;
  handshakeTimeoutMs?: number;
}

export class NbdServer {
  private readonly connections = new Set<NbdConnection>();
  private server: Server | null = null;
  private bound: ListenAddress | null = null;
  private shuttingDown = false;
  private idleWaiters: Array<() => void> = [];
  private readonly log: Logger;
  private ready: Disk | undefined;
  private readonly opening: Promise<Disk> | undefined;
  /** Connections accepted while the disk was opening. */
  private readonly held = new Set<Socket>();

  constructor(disk: Disk | Promise<Disk>, private readonly opts: NbdServerOptions = {}) {
    this.log = opts.log ?? defaultLog;
    if (disk instanceof Promise) {
      this.opening = disk;
      // A disk that fails to open ends the held connections (their clients see EOF before the greeting).
      disk.then((d) => { this.ready = d; }, () => {});
    } else {
      this.ready = disk;
    }
  }

  /** The exported disk; throws while it is still opening. */
  get disk(): Disk {
    if (!this.ready) throw new Error('the NBD server\'s disk is still opening');
    return this.ready;
  }

  /** How many times a connection stopped reading because it hit its in-flight bound. */
  backpressureEvents = 0;

  /** Connections open or still finishing in-flight work. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Where the server listens (with the real port when 0 was asked for). */
  get address(): ListenAddress {
    if (!this.bound) throw new Error('the NBD server is not listening');
    return this.bound;
  }

  get uri(): string {
    return nbdUri(this.address, this.opts.exportName ?? '');
  }

  /**
   * Starts listening. A unix socket is bound under a temporary name and renamed into place, so
   * the path appears only once the server accepts connections (readiness = the path exists).
   */
  async listen(addr: ListenAddress): Promise<void> {
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.log.error({ err: err.message }, 'nbd listener error'));
    if ('unix' in addr) {
      await removeStaleSocket(addr.unix);
      const tmp = `${addr.unix}.${process.pid}.tmp`;
      await rm(tmp, { force: true });
      await listenOn(server, (cb) => server.listen(tmp, cb));
      await rename(tmp, addr.unix);
      this.bound = { unix: addr.unix };
    } else {
      await listenOn(server, (cb) => server.listen(addr.port, addr.host, cb));
      const a = server.address();
      this.bound = { host: addr.host, port: typeof a === 'object' && a ? a.port : addr.port };
    }
    this.server = server;
  }

  private accept(socket: Socket): void {
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    if (this.ready) {
      this.serve(socket, this.ready);
      return;
    }
    // The client sends nothing before our greeting: hold the socket until the disk is open.
    this.held.add(socket);
    socket.once('close', () => this.held.delete(socket));
    this.opening!.then((d) => {
      if (!this.held.delete(socket)) return;
      if (this.shuttingDown || socket.destroyed) socket.destroy();
      else this.serve(socket, d);
    }, () => {
      this.held.delete(socket);
      socket.destroy();
    });
  }

  private serve(socket: Socket, disk: Disk): void {
    const conn = new NbdConnection(socket, disk, {
      name: this.opts.exportName ?? '',
      description: this.opts.description ?? '',
      size: disk.size,
      writable: disk.writable,
      caps: disk.caps,
    }, {
      pool: this.opts.pool ?? sharedPool,
      log: this.log,
      maxInFlightBytes: this.opts.maxInFlightBytes ?? 64 * 1024 * 1024,
      holeThreshold: this.opts.holeThreshold ?? 64 * 1024,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs ?? 30_000,
      isShuttingDown: () => this.shuttingDown,
      onBackpressure: this.onBackpressure,
    }, this.onConnectionClosed);
    this.connections.add(conn);
    this.log.debug({ connections: this.connections.size }, 'nbd client connected');
    void conn.run();
  }

  private readonly onBackpressure = (): void => {
    this.backpressureEvents++;
  };

  private readonly onConnectionClosed = (conn: NbdConnection): void => {
    this.connections.delete(conn);
    this.log.debug({ connections: this.connections.size }, 'nbd client gone');
    if (this.connections.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  };

  /** Resolves once no connection is open or finishing (for tests and shutdown). */
  whenIdle(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops accepting, lets every connection finish its in-flight requests, and closes them. */
  async close(): Promise<void> {
    this.shuttingDown = true;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.held) s.destroy();
    this.held.clear();
    for (const c of this.connections) c.shutdown();
    await this.whenIdle();
    await closed;
    if (this.bound && 'unix' in this.bound) await rm(this.bound.unix, { force: true });
  }
}

function listenOn(server: Server, start: (cb: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Removes a socket file nobody listens on (left by a killed server); refuses to steal a live one. */
export async function removeStaleSocket(path: string): Promise<void> {
  const st = await stat(path).catch(() => null);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path}: another server is listening there`);
  await rm(path, { force: true });
}
