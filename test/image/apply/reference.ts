/**
 * The reference extraction: GNU tar into a directory, with whiteouts applied first the way
 * /work/shared/bench/nbd-serve.sh's apply_layer does (rm -rf the hidden name, empty an opaque
 * directory, then extract everything but the .wh.* files).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const APPLY_LAYER = `
apply_layer() {
  local m=$1 t=$2 p d b
  tar -tf "$t" | { grep -E '(^|/)\\.wh\\.' || true; } | while IFS= read -r p; do
    d=$(dirname "$p"); b=$(basename "$p")
    if [ "$b" = .wh..wh..opq ]; then [ ! -d "$m/$d" ] || find "$m/$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    else rm -rf "\${m:?}/$d/\${b#.wh.}"; fi
  done
  tar -C "$m" -xpf "$t" --numeric-owner --xattrs --xattrs-include='*' --exclude='.wh.*' --exclude='*/.wh.*'
}
apply_layer "$1" "$2"
`;

/** Applies each tar in turn onto `dir` with GNU tar (whiteouts as the bench script does). */
export function referenceApply(dir: string, tars: Buffer[], scratch: string): void {
  tars.forEach((buf, i) => {
    const file = join(scratch, `ref-layer-${i}.tar`);
    writeFileSync(file, buf);
    execFileSync('bash', ['-c', APPLY_LAYER, 'apply_layer', dir, file], { stdio: ['ignore', 'ignore', 'pipe'] });
  });
}
