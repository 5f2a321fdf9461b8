/**
 * Errors crossing the thread boundary of the applier worker keep their class and fields, so a
 * caller sees the same ApplyError or FormatError it would get from applyLayer in its own thread.
 */
import { FormatError } from '../../errors.ts';
import { ApplyError } from '../apply/index.ts';

export type ThreadError =
  | { kind: 'apply'; entry: string; problem: string }
  | { kind: 'format'; file: string; offset: number; problem: string }
  | { kind: 'other'; name: string; message: string; code?: string };

export function toThreadError(err: unknown): ThreadError {
  if (err instanceof ApplyError) return { kind: 'apply', entry: err.entry, problem: err.problem };
  if (err instanceof FormatError) return { kind: 'format', file: err.file, offset: err.offset, problem: err.problem };
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return { kind: 'other', name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
}

export function fromThreadError(t: ThreadError): Error {
  if (t.kind === 'apply') return new ApplyError(t.entry, t.problem);
  if (t.kind === 'format') return new FormatError(t.file, t.offset, t.problem);
  const e = new Error(t.message);
  e.name = t.name;
  if (t.code !== undefined) (e as { code?: string }).code = t.code;
  return e;
}
