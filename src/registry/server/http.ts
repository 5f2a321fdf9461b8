/** Small HTTP helpers for the embedded registry: OCI error bodies, JSON replies, bounded body reads. */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An OCI error the handlers throw; the router turns it into a JSON reply. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string,
    readonly headers: Record<string, string> = {}, readonly detail?: unknown) {
    super(message);
  }
}

export function sendError(res: ServerResponse, err: HttpError): void {
  const body = JSON.stringify({ errors: [{ code: err.code, message: err.message, ...(err.detail !== undefined ? { detail: err.detail } : {}) }] });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(err.status, { ...err.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-length': '0' });
  res.end();
}

/** Reads a request body of at most `limit` bytes; more is a 413-style SIZE_INVALID error. */
export async function readBody(req: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw new HttpError(413, 'SIZE_INVALID', `${what} larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new HttpError(413, 'SIZE_INVALID', `${what} larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

export const err = {
  nameInvalid: (name: string) => new HttpError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name)}`),
  nameUnknown: (name: string) => new HttpError(404, 'NAME_UNKNOWN', `repository name not known to registry: ${name}`),
  digestInvalid: (msg: string) => new HttpError(400, 'DIGEST_INVALID', msg),
  blobUnknown: (digest: string) => new HttpError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', {}, { digest }),
  manifestUnknown: (ref: string) => new HttpError(404, 'MANIFEST_UNKNOWN', 'manifest unknown', {}, { reference: ref }),
  uploadUnknown: () => new HttpError(404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry'),
  unsupported: (msg: string) => new HttpError(405, 'UNSUPPORTED', msg),
};
