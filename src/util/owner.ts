/**
 * The one owner of what a chain opened: everything adopted is closed exactly once, in reverse
 * order of adoption (a filter before the source below it, an image before its cache and client),
 * also when the chain is only half built because a later step failed.
 */
export interface Closeable { close(): Promise<unknown> }

export class Owner {
  private readonly held: Array<{ what: string; thing: Closeable }> = [];
  private closed = false;

  /** Takes `thing` over; `what` names it in close errors. Returns it, for chaining. */
  adopt<T extends Closeable>(thing: T, what = 'resource'): T {
    if (this.closed) throw new Error(`${what}: adopted after its owner was closed`);
    this.held.push({ what, thing });
    return thing;
  }

  /** Runs `fn` at close time, in its place in the reverse order. */
  defer(what: string, fn: () => Promise<unknown>): void {
    this.adopt({ close: fn }, what);
  }

  /** Hands `thing` to another owner (e.g. a LayerStack that now closes its layers). */
  disown(thing: Closeable): void {
    const i = this.held.findIndex((h) => h.thing === thing);
    if (i >= 0) this.held.splice(i, 1);
  }

  /** Closes everything, newest first; every close is attempted, then the first failure is thrown. */
  async close(): Promise<void> {
    this.closed = true;
    const failures: string[] = [];
    let first: unknown;
    for (const { what, thing } of this.held.splice(0).reverse()) {
      try {
        await thing.close();
      } catch (err) {
        first ??= err;
        failures.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failures.length === 1) throw first;
    if (failures.length > 1) throw new Error(`closing failed: ${failures.join('; ')}`, { cause: first });
  }
}
