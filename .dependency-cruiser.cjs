/**
 * The module map as rules: folders of src/ from the top of the data path down. A module may
 * import those below it, never one above it, and no files may import each other in a circle.
 * `npm test` runs this (scripts/check-imports.mjs); a violation fails the suite. The README's
 * architecture section shows the same table.
 */
const LAYERS = [
  ['cli'],
  ['demo'],
  ['daemon'],
  ['p2p'],
  ['image'],
  ['host'],
  ['nbd'],
  ['fs'],
  ['registry'],
  ['disk'],
  ['format'],
  ['io'],
  ['util', 'errors.ts'],
];

const pathOf = (m) => (m.endsWith('.ts') ? `^src/${m.replace('.', '\\.')}$` : `^src/${m}/`);

/** Narrower rules than the order alone: what a module must know nothing of (DESIGN.md). */
const KNOWS_NOTHING_OF = [
  { from: 'image', to: ['nbd'], why: 'images know nothing of NBD: mount through src/host' },
  { from: 'host', to: ['format', 'registry', 'image'], why: 'host attaches a Disk; it knows nothing of formats' },
  { from: 'nbd', to: ['disk', 'format', 'registry'], why: 'the NBD server serves any Disk; it knows nothing of layers or registries' },
  { from: 'fs', to: ['registry'], why: 'userspace file systems work over a Disk; they know nothing of registries' },
  { from: 'registry', to: ['disk', 'format'], why: 'the registry moves blobs; it knows nothing of disks or layer formats' },
  { from: 'disk', to: ['registry'], why: 'disks know nothing of HTTP' },
  { from: 'format', to: ['registry', 'disk'], why: 'formats are byte logic over a ByteSource' },
];

const forbidden = [
  {
    name: 'no-circular',
    severity: 'error',
    comment: 'files that import each other in a loop cannot be understood or tested one at a time',
    from: { path: '^src/' },
    to: { circular: true },
  },
];

LAYERS.forEach((level, i) => {
  const above = LAYERS.slice(0, i).flat();
  if (above.length === 0) return;
  for (const m of level) {
    forbidden.push({
      name: `down-only:${m}`,
      severity: 'error',
      comment: `${m} sits below ${above.join(', ')} in the module map; imports point down the data path`,
      from: { path: pathOf(m) },
      to: { path: above.map(pathOf) },
    });
  }
});

for (const rule of KNOWS_NOTHING_OF) {
  forbidden.push({
    name: `knows-nothing-of:${rule.from}`,
    severity: 'error',
    comment: rule.why,
    from: { path: pathOf(rule.from) },
    to: { path: rule.to.map(pathOf) },
  });
}

forbidden.push({
  name: 'cli-libraries-in-cli',
  severity: 'error',
  comment: 'command-line parsing and terminal output belong to src/cli; everything below takes plain values',
  from: { path: '^src/', pathNot: '^src/cli/' },
  to: { path: 'node_modules/(commander|cli-progress)/' },
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
