/**
 * HTTP for the registry client: one keep-alive undici Agent (a pool per origin), a timeout on
 * every request (waiting for headers, and between body chunks, plus an optional overall
 * deadline), and bounded retries with exponential backoff and jitter for the faults that pass:
 * connection errors, timeouts, truncated bodies, 5xx and 429 (honouring Retry-After). 4xx
 * answers are final and are never retried here.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { rootCertificates } from 'node:tls';
import { RegistryError, parseOciErrors } from './errors.ts';
import { retriesTotal } from './metrics.ts';

export interface TransportOptions {
  /** Wait at most this long for response headers, and between body chunks (default 30 s). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 3). */
  retries?: number;
  /** First backoff delay; doubles each retry, with jitter (default 100 ms). */
  backoffMs?: number;
  /** Upper bound of one backoff delay, and of a Retry-After we honour (default 10 s). */
  maxBackoffMs?: number;
  /** Connections per origin (default 16). */
  connections?: number;
  userAgent?: string;
  /** Extra trusted CA certificates (PEM), added to the system ones, for private registries. */
  ca?: string | Buffer | (string | Buffer)[];
}

export interface HttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  /** Replayable body: retries send it again. */
  body?: Uint8Array;
  /** Overall limit for this exchange (headers and whole body), on top of the idle timeouts. */
  deadlineMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  url: string;
  method: string;
}

/** A failure worth another attempt; `error` is what the caller sees if the attempts run out. */
export class TransientError extends Error {
  override readonly name = 'TransientError';
  constructor(readonly error: Error, readonly retryAfterMs?: number) {
    super(error.message, { cause: error });
  }
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_ABORTED',
]);

/** Connection-level failures and timeouts: the request may succeed if sent again. */
export function isTransientNetworkError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    const name = (e as { name?: unknown }).name;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
    if (name === 'TimeoutError' || name === 'AbortError') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** `bytes start-end/total` (total may be `*`). */
export function parseContentRange(value: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = value ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim()) : null;
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) return undefined;
  return { start, end, ...(m[3] !== '*' ? { total: Number(m[3]) } : {}) };
}

export class Transport {
  readonly timeoutMs: number;
  readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly userAgent: string;
  private readonly agent: Agent;

  constructor(opts: TransportOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 100;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    this.userAgent = opts.userAgent ?? 'dadi/0.1.0';
    this.agent = new Agent({
      connections: opts.connections ?? 16,
      keepAliveTimeout: 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      ...(opts.ca ? { connect: { ca: [...rootCertificates, ...(Array.isArray(opts.ca) ? opts.ca : [opts.ca])] } } : {}),
    });
  }

  /** One attempt, no retries and no redirect following. The caller consumes or dumps the body. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const signal = req.deadlineMs !== undefined ? AbortSignal.timeout(req.deadlineMs) : undefined;
    try {
      const res = await request(req.url, {
        dispatcher: this.agent,
        method: req.method as Dispatcher.HttpMethod,
        headers: { 'user-agent': this.userAgent, ...req.headers },
        body: req.body ?? null,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      return { status: res.statusCode, headers: res.headers, body: res.body, url: req.url, method: req.method };
    } catch (err) {
      throw this.networkError(req, err);
    }
  }

  /** Wraps a connection-level failure as a RegistryError naming the request, transient if it may pass. */
  networkError(req: { method: string; url: string }, err: unknown): Error {
    if (err instanceof RegistryError || err instanceof TransientError) return err;
    const what = describeNetworkError(err, this.timeoutMs);
    const e = new RegistryError(req.method, req.url, 0, [], what, { cause: err });
    return isTransientNetworkError(err) ? new TransientError(e) : e;
  }

  /**
   * Runs `attempt` until it succeeds, throws a non-transient error, or the retries run out; then
   * throws the last error with the attempt count appended.
   */
  async retry<T>(attempt: (n: number) => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        const transient = err instanceof TransientError ? err
          : isTransientNetworkError(err) ? new TransientError(err as Error) : undefined;
        if (!transient) throw err;
        if (n >= this.retries) {
          const final = transient.error;
          final.message += ` (gave up after ${n + 1} attempts)`;
          throw final;
        }
        retriesTotal.inc();
        await sleep(this.delay(n, transient.retryAfterMs));
      }
    }
  }

  private delay(n: number, retryAfterMs?: number): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.maxBackoffMs);
    const ceiling = Math.min(this.backoffMs * 2 ** n, this.maxBackoffMs);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Turns a non-success response into a RegistryError, transient for 5xx and 429. */
  async failure(res: HttpResponse, problem?: string): Promise<Error> {
    let text = '';
    try {
      text = await readText(res, 64 * 1024);
    } catch { /* the status alone still says enough */ }
    const err = new RegistryError(res.method, res.url, res.status, parseOciErrors(text), problem);
    if (res.status >= 500 || res.status === 429) {
      return new TransientError(err, parseRetryAfter(header(res.headers, 'retry-after')));
    }
    return err;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** Reads a (small) body as text, refusing more than `limit` bytes. */
export async function readText(res: HttpResponse, limit: number): Promise<string> {
  return (await readBytes(res, limit)).toString('utf8');
}

/** Reads a body fully as bytes, refusing more than `limit`. */
export async function readBytes(res: HttpResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      res.body.destroy();
      throw new RegistryError(res.method, res.url, res.status, [], `response body larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** Discards a body so the connection can be reused. */
export async function drain(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 256 * 1024 });
  } catch { /* the connection is dropped instead */ }
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return `timed out after ${timeoutMs} ms waiting for the response headers`;
  if (code === 'UND_ERR_BODY_TIMEOUT') return `timed out after ${timeoutMs} ms waiting for response body data`;
  if (e?.name === 'TimeoutError') return 'timed out (request deadline exceeded)';
  const msg = e?.message ?? String(err);
  const causeMsg = e?.cause?.message && e.cause.message !== msg ? `: ${e.cause.message}` : '';
  return `${code ? `${code} ` : ''}${msg}${causeMsg}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
