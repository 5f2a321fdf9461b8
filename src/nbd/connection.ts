/**
 * One client connection: the handshake (awaiting exact byte counts, with a deadline), then the
 * transmission phase. Whatever the client does, the connection ends by calling onClosed exactly
 * once, after its socket is gone and its in-flight requests have completed.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Disk } from '../io/types.ts';
import { errorMessage } from '../errors.ts';
import { ByteQueue } from './byte-queue.ts';
import { negotiate, HandshakeRefused, type ExportInfo, type HandshakeIO } from './handshake.ts';
import { Transmission, type TransmissionOptions } from './transmission.ts';

export interface ConnectionOptions extends TransmissionOptions {
  handshakeTimeoutMs: number;
  isShuttingDown: () => boolean;
}

class ConnectionEnded extends Error {}

export class NbdConnection {
  private readonly queue = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private transmission: Transmission | null = null;
  private socketClosed = false;
  private reported = false;
  private readonly log: Logger;

  constructor(
    private readonly socket: Socket,
    private readonly disk: Disk,
    private readonly exp: ExportInfo,
    private readonly opts: ConnectionOptions,
    private readonly onClosed: (c: NbdConnection) => void,
  ) {
    this.log = opts.log;
    socket.setNoDelay?.(true);
    socket.on('data', this.onData);
    socket.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'nbd socket error'));
    socket.on('close', this.onSocketClose);
  }

  /** Runs the handshake and hands the socket to the transmission phase. */
  async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.log.warn('nbd handshake timed out; closing the connection');
      this.socket.destroy();
    }, this.opts.handshakeTimeoutMs);
    timer.unref();
    try {
      const session = await negotiate(this.io, this.exp, this.opts.isShuttingDown);
      clearTimeout(timer);
      if (session === null || this.socketClosed) {
        this.socket.end();
        this.socket.destroySoon?.();
        return;
      }
      const t = new Transmission(this.socket, this.queue, this.disk, session, this.opts, () => this.report());
      this.transmission = t;
      if (this.opts.isShuttingDown()) t.drain();
      else t.onData(Buffer.alloc(0));
    } catch (err) {
      clearTimeout(timer);
      if (err instanceof HandshakeRefused) this.log.warn({ why: err.message }, 'nbd handshake refused; closing the connection');
      else if (!(err instanceof ConnectionEnded)) this.log.warn({ err: errorMessage(err) }, 'nbd handshake failed');
      this.socket.destroy();
    }
  }

  /** Server shutdown: drop connections still negotiating, drain those transmitting. */
  shutdown(): void {
    if (this.transmission) this.transmission.drain();
    else this.socket.destroy();
  }

  private readonly io: HandshakeIO = {
    read: (n) => {
      if (this.queue.length >= n) return Promise.resolve(this.queue.take(n));
      if (this.socketClosed) return Promise.reject(new ConnectionEnded('connection closed during the handshake'));
      return new Promise((resolve, reject) => { this.waiter = { n, resolve, reject }; });
    },
    write: (bytes) => {
      if (!this.socket.destroyed) this.socket.write(bytes);
    },
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.transmission) {
      this.transmission.onData(chunk);
      return;
    }
    this.queue.push(chunk);
    const w = this.waiter;
    if (w && this.queue.length >= w.n) {
      this.waiter = null;
      w.resolve(this.queue.take(w.n));
    }
  };

  private readonly onSocketClose = (): void => {
    this.socketClosed = true;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new ConnectionEnded('connection closed during the handshake'));
    if (this.transmission) this.transmission.onSocketClosed();
    else this.report();
  };

  private report(): void {
    if (this.reported) return;
    this.reported = true;
    this.onClosed(this);
  }
}
