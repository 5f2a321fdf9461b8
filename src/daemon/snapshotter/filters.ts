/**
 * containerd's filter syntax, as Walk (List) receives it: each filter string is selectors joined
 * by `,` (all must hold), and the strings of one request are alternatives (any may hold). A
 * selector is a field path (`name`, `parent`, `kind`, `labels."containerd.io/snapshot.ref"`),
 * optionally an operator (`==`, `!=`, `~=` regexp) and a value, bare up to the next comma or
 * quoted ("…" with escapes, or /regexp/). A bare field path tests presence.
 */
export class FilterSyntaxError extends Error {
  override readonly name = 'FilterSyntaxError';
}

type Operator = 'present' | '==' | '!=' | '~=';
interface Selector { path: string[]; op: Operator; value: string; regexp?: RegExp }
export type FieldLookup = (path: readonly string[]) => string | undefined;

/** A parsed set of filters: `match` holds when any alternative holds. */
export interface Filter { match(lookup: FieldLookup): boolean }

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}
  get done(): boolean { return this.pos >= this.text.length; }
  peek(): string { return this.text[this.pos] ?? ''; }
  fail(why: string): never {
    throw new FilterSyntaxError(`filter ${JSON.stringify(this.text)}: ${why} at position ${this.pos}`);
  }
  skipSpace(): void { while (/\s/.test(this.peek()) && !this.done) this.pos++; }

  quoted(close: string): string {
    const start = this.pos;
    this.pos++;
    let out = '';
    while (!this.done && this.peek() !== close) {
      if (this.peek() === '\\') {
        this.pos++;
        const c = this.peek();
        if (close === '/') out += c === '/' ? '/' : `\\${c}`;
        else out += ({ n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"' } as Record<string, string>)[c] ?? c;
        this.pos++;
        continue;
      }
      out += this.peek();
      this.pos++;
    }
    if (this.done) { this.pos = start; this.fail(`unterminated ${close === '/' ? 'regexp' : 'string'}`); }
    this.pos++;
    return out;
  }

  field(): string {
    if (this.peek() === '"') return this.quoted('"');
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.pos));
    if (!m) this.fail('expected a field name');
    this.pos += m![0].length;
    return m![0];
  }

  value(): string {
    if (this.peek() === '"') return this.quoted('"');
    if (this.peek() === '/') return this.quoted('/');
    const start = this.pos;
    while (!this.done && this.peek() !== ',' && !/\s/.test(this.peek())) this.pos++;
    if (this.pos === start) this.fail('expected a value');
    return this.text.slice(start, this.pos);
  }
}

function parseSelector(s: Scanner): Selector {
  s.skipSpace();
  const path = [s.field()];
  while (s.peek() === '.') {
    s.pos++;
    path.push(s.field());
  }
  s.skipSpace();
  const two = s.text.slice(s.pos, s.pos + 2);
  if (two === '==' || two === '!=' || two === '~=') {
    s.pos += 2;
    s.skipSpace();
    const value = s.value();
    const sel: Selector = { path, op: two, value };
    if (two === '~=') {
      try {
        sel.regexp = new RegExp(value);
      } catch (err) {
        s.fail(`bad regexp ${JSON.stringify(value)}: ${(err as Error).message}`);
      }
    }
    return sel;
  }
  return { path, op: 'present', value: '' };
}

function parseOne(text: string): Selector[] {
  const s = new Scanner(text);
  const out: Selector[] = [];
  for (;;) {
    out.push(parseSelector(s));
    s.skipSpace();
    if (s.done) return out;
    if (s.peek() !== ',') s.fail(`unexpected ${JSON.stringify(s.peek())}`);
    s.pos++;
  }
}

function holds(sel: Selector, lookup: FieldLookup): boolean {
  const v = lookup(sel.path);
  switch (sel.op) {
    case 'present': return v !== undefined;
    case '==': return v === sel.value;
    case '!=': return v !== sel.value;
    case '~=': return v !== undefined && sel.regexp!.test(v);
  }
}

export function parseFilters(filters: readonly string[]): Filter {
  const alternatives = filters.filter((f) => f.trim() !== '').map(parseOne);
  return {
    match: (lookup) => alternatives.length === 0 || alternatives.some((sels) => sels.every((sel) => holds(sel, lookup))),
  };
}
