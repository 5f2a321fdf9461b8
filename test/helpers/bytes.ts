/** Byte comparison for tests: equal, or fail naming the first differing byte. */
import assert from 'node:assert/strict';

export function assertSameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  if (!Buffer.from(got).equals(Buffer.from(want))) {
    let i = 0;
    while (i < got.length && got[i] === want[i]) i++;
    assert.fail(`${what}: first difference at byte ${i} of ${want.length}`);
  }
}
