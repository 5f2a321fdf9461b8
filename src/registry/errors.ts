/**
 * Errors from talking to a registry. Every message names the request (method and URL), the HTTP
 * status and, when the registry sent one, its OCI error code and message, so a user can tell a
 * missing blob from a refused credential without a packet capture.
 */

/** One entry of an OCI error body: `{"errors":[{"code","message","detail"}]}`. */
export interface OciErrorEntry { code: string; message: string; detail?: unknown }

export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly method: string,
    readonly url: string,
    /** HTTP status, or 0 when no response arrived (connection error, timeout). */
    readonly status: number,
    readonly errors: OciErrorEntry[],
    problem?: string,
    options?: { cause?: unknown },
  ) {
    super(`${method} ${url}: ${describe(status, errors, problem)}`, options);
  }

  /** The first OCI error code, e.g. BLOB_UNKNOWN, if the registry sent one. */
  get code(): string | undefined {
    return this.errors[0]?.code;
  }
}

function describe(status: number, errors: OciErrorEntry[], problem?: string): string {
  const parts: string[] = [];
  if (status !== 0) parts.push(String(status));
  for (const e of errors) parts.push(`${e.code} ${e.message}`.trim());
  if (problem) parts.push(problem);
  return parts.join(' ') || 'request failed';
}

/** Parses an OCI error body; tolerates anything (HTML error pages, empty bodies). */
export function parseOciErrors(body: string): OciErrorEntry[] {
  if (!body) return [];
  try {
    const json = JSON.parse(body) as { errors?: unknown };
    if (Array.isArray(json.errors)) {
      return json.errors.map((e: { code?: unknown; message?: unknown; detail?: unknown }) => ({
        code: typeof e?.code === 'string' ? e.code : 'UNKNOWN',
        message: typeof e?.message === 'string' ? e.message : '',
        ...(e?.detail !== undefined ? { detail: e.detail } : {}),
      }));
    }
  } catch { /* not JSON: fall through */ }
  const text = body.replace(/\s+/g, ' ').trim().slice(0, 200);
  return text ? [{ code: 'UNKNOWN', message: text }] : [];
}

/** Bad user input: an unparseable reference, a malformed digest. */
export class InvalidReferenceError extends Error {
  override readonly name = 'InvalidReferenceError';
}
