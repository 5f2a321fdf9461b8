/** Whether the first bytes of a file are an LSMT or ZFile header (formats.md §7.4 step 2). */
import { hasLsmtMagic } from '../../format/lsmt/header.ts';
import { hasMagic as hasZfileMagic } from '../../format/zfile/header.ts';

export function looksLikeLayer(head: Uint8Array): boolean {
  return hasLsmtMagic(head) || hasZfileMagic(head);
}
