/** A layer entry that cannot be applied safely or at all; the message names the entry. */
export class ApplyError extends Error {
  override readonly name = 'ApplyError';
  constructor(readonly entry: string, readonly problem: string, options?: { cause?: unknown }) {
    super(`layer entry ${JSON.stringify(entry)}: ${problem}`, options);
  }
}

/** The errno code of a Node fs error, if any. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
