/**
 * The grammar of repository names and tags from the distribution spec, shared by the client's
 * reference parser and the server's request router (where it is also what keeps `..` and other
 * path tricks out of the storage tree).
 */

/** One path component: lower-case alphanumerics joined by `.`, `_`, `__` or runs of `-`. */
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
export const REPOSITORY_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const MAX_REPOSITORY_LENGTH = 255;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_REPOSITORY_LENGTH && REPOSITORY_RE.test(name);
}

export function isTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
