#!/bin/bash
# bench/make-estargz.sh - the stargz peer's image: `ctr-remote image convert --estargz --oci` of
# bench/app, pushed as bench/app:esgz to the bench registry (storage $BENCH_CACHE/registry), with a
# private containerd that is removed afterwards. Run once before bench/coldstart.sh with stargz.
set -euo pipefail
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
. "$SHARED/bench/lib/registry.sh"
C=/tmp/dadi-bench-esgz; REG=127.0.0.1:5073
rm -rf "$C"; mkdir -p "$C"
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/c.sock"
[ttrpc]
  address = "$C/t.sock"
TOML
reg_start esgz "$REG"
containerd --config "$C/config.toml" >"$C/log" 2>&1 & echo $! >"$C/pid"
trap 'kill $(cat $C/pid) 2>/dev/null; sleep 1; reg_stop esgz; rm -rf $C' EXIT
R=(ctr-remote --address "$C/c.sock" --namespace esgz)
for _ in $(seq 1 100); do "${R[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${R[@]}" image pull --plain-http "$REG/bench/app:latest" >/dev/null
"${R[@]}" image convert --estargz --oci "$REG/bench/app:latest" "$REG/bench/app:esgz"
"${R[@]}" image push --plain-http "$REG/bench/app:esgz"
