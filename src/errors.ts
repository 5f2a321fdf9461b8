/**
 * Errors that name what went wrong and where. Format errors carry the file and byte offset;
 * disk errors carry the errno-style code the NBD server maps to its protocol error replies.
 */

/** Corrupt, truncated or unsupported input: names the file, the offset, and what was expected. */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(readonly file: string, readonly offset: number, readonly problem: string) {
    super(`${file}: at offset ${offset}: ${problem}`);
  }
}

export type DiskErrorCode = 'EIO' | 'EROFS' | 'EINVAL' | 'ENOSPC' | 'EOVERFLOW' | 'EPERM' | 'ENOTSUP';

/** A failed disk operation; `code` selects the protocol error a client sees. */
export class DiskError extends Error {
  override readonly name = 'DiskError';
  constructor(readonly code: DiskErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
  }
}

/** Maps any error to the errno-style code a block client should see; unknown failures are EIO. */
export function diskErrorCode(err: unknown): DiskErrorCode {
  if (err instanceof DiskError) return err.code;
  return 'EIO';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Attaches what happened inside (the internal command line, a tool's log) to an error whose
 * message is what the user needs to read; `dadi --verbose` prints it.
 */
export function withDetail<E extends Error>(err: E, detail: string): E {
  return Object.assign(err, { detail });
}

/** The details of `err` and its causes, outermost first. */
export function errorDetail(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 6; depth++) {
    const d = (e as { detail?: unknown }).detail;
    if (typeof d === 'string' && d.trim()) out.push(d.trim());
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** A mistake in how a command was called (a missing or unknown flag): exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
