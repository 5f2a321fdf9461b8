/**
 * Required flags, checked in the action rather than by commander: commander reports a missing
 * required flag before an unknown one, so `dadi serve --bogus x` would complain about --listen
 * instead of naming --bogus.
 */
import { UsageError } from '../errors.ts';

export function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}
