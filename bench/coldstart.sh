#!/bin/bash
# bench/coldstart.sh - cold start of bench/app (pull + run until it prints `ready`) with containerd:
# overlayfs (the whole image pulled and unpacked), the dadi snapshotter (`dadi pull`, blocks fetched
# on demand), and stargz when its daemon is built (STARGZ_BIN, see ../shared/bench/README.md).
# Variants are interleaved run by run inside each network profile, each run on a fresh containerd
# (../shared/bench/coldstart-overlayfs.sh) and, for dadi, a fresh daemon on an empty root and cache.
#
# Inputs (env): PROFILES ("loopback 1gbit-0.5ms 100mbit-2ms"), RUNS (3), VARIANTS ("overlayfs dadi",
#   add "stargz" with STARGZ_BIN), DADI_IMAGE (bench/app:obd; `dadi convert` of bench/app pushed to
#   the bench registry, see README below), OUT (/tmp/dadi-bench-coldstart-snap), DADI_REFILL (cache
#   refill unit, default the daemon's), SHARED (../shared).
#   STARGZ_BIN: bench/stargz/build.sh builds it; STARGZ_IMAGE (bench/app:esgz, from bench/make-estargz.sh).
# Output: $OUT/raw.tsv (one row per run and variant), $OUT/dadi-attach.tsv (the daemon's own
#   timings per run: open layers, NBD + nbdfuse + loop, mount), and a summary table with the
#   medians and each variant's ratio to overlayfs.
# Before the first run: `npm run build` (dadi runs compiled) and, once,
#   ../shared/bench/lib/registry.sh's reg_start on a spare port + `dadi convert
#   oci:/var/cache/dadi-bench/oci:app 127.0.0.1:PORT/bench/app:obd`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$REPO/../shared" && pwd)}
PROFILES=${PROFILES:-"loopback 1gbit-0.5ms 100mbit-2ms"}
RUNS=${RUNS:-3}
VARIANTS=${VARIANTS:-"overlayfs dadi"}
DADI_IMAGE=${DADI_IMAGE:-bench/app:obd}
OUT=${OUT:-/tmp/dadi-bench-coldstart-snap}
D=/tmp/dadi-bench-snap   # daemon root, cache and socket (short: NBD socket paths must fit 107 bytes)
DADI="node $REPO/dist/cli/main.js"
[ -f "$REPO/dist/cli/main.js" ] || { echo "run npm run build first" >&2; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT"
printf 'variant\tprofile\trep\tpull_s\tfetch_s\tunpack_s\tready_s\trun_s\ttotal_s\tctd_cpu_s\treg_MB\tlink_MB\n' >"$OUT/raw.tsv"
printf 'profile\trep\topen_ms\tattach_ms\tmount_ms\tprepare_ms\tfetched_MB\n' >"$OUT/dadi-attach.tsv"

# The dadi daemon's start/stop hooks, run by coldstart-overlayfs.sh around each run (REG is set).
DADI_BEFORE="set -e; rm -rf $D; mkdir -p $D
cat >$D/config.toml <<EOF
root = \"$D/root\"
address = \"$D/s.sock\"
logLevel = \"debug\"
[cache]
dir = \"$D/cache\"
${DADI_REFILL:+refillUnit = \"$DADI_REFILL\"}
[background]
enable = false
[registry]
plainHttp = [\"\$REG\"]
EOF
setsid $DADI snapshotter --config $D/config.toml >$D/daemon.log 2>&1 < /dev/null &
echo \$! >$D/pid
for i in \$(seq 1 200); do [ -S $D/s.sock ] && exit 0; sleep 0.05; done; echo 'dadi snapshotter did not start' >&2; cat $D/daemon.log >&2; exit 1"
DADI_AFTER="pid=\$(cat $D/pid); kill \$pid 2>/dev/null || true; for i in \$(seq 1 200); do kill -0 \$pid 2>/dev/null || break; sleep 0.05; done
cp $D/daemon.log $OUT/last-daemon.log; rm -rf $D"

run_variant() {  # variant profile rep
  local v=$1 prof=$2 rep=$3 o="$OUT/$1-$2-$3"
  case "$v" in
    overlayfs) env OUT="$o" PROFILES="$prof" RUNS=1 bash "$SHARED/bench/coldstart-overlayfs.sh" >/dev/null 2>"$o.err" ;;
    dadi)
      env OUT="$o" PROFILES="$prof" RUNS=1 SNAPSHOTTER=dadi IMAGE="$DADI_IMAGE" \
        CTD_EXTRA_TOML="$(printf '[proxy_plugins.dadi]\n  type = "snapshot"\n  address = "%s/s.sock"' "$D")" \
        PULL_CMD="$DADI pull --insecure --address \$SOCK --namespace bench --snapshotter dadi \$REG/\$IMAGE" \
        BEFORE_RUN="$DADI_BEFORE" AFTER_RUN="$DADI_AFTER" \
        bash "$SHARED/bench/coldstart-overlayfs.sh" >/dev/null 2>"$o.err"
      # The daemon's account of the rootfs: how long opening the layers, attaching and mounting took.
      /usr/bin/python3 - "$OUT/last-daemon.log" "$prof" "$rep" >>"$OUT/dadi-attach.tsv" <<'PY'
import json, sys
op = at = mo = pr = 0.0; fetched = 0
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get('msg') == 'attached':
        t = e.get('timings', {}); op, at, mo = t.get('openMs', 0), t.get('attachMs', 0), t.get('mountMs', 0)
    if e.get('msg') == 'snapshots call' and e.get('op') == 'Prepare': pr = max(pr, e.get('ms', 0))
    if e.get('msg') == 'image fetch and cache counters' or e.get('msg') == 'detached':
        fetched = max(fetched, e.get('fetchedBytes', 0))
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{op:.0f}\t{at:.0f}\t{mo:.0f}\t{pr:.0f}\t{fetched/1e6:.2f}")
PY
      ;;
    stargz)
      [ -n "${STARGZ_BIN:-}" ] || { echo "stargz needs STARGZ_BIN" >&2; return 1; }
      local S=/tmp/dadi-bench-stargz
      env OUT="$o" PROFILES="$prof" RUNS=1 SNAPSHOTTER=stargz IMAGE="${STARGZ_IMAGE:-bench/app:esgz}" \
        CTD_EXTRA_TOML="$(printf '[proxy_plugins.stargz]\n  type = "snapshot"\n  address = "%s/s.sock"' "$S")" \
        PULL_CMD="ctr-remote --address \$SOCK --namespace bench image rpull --plain-http --snapshotter stargz \$REG/\$IMAGE" \
        BEFORE_RUN="rm -rf $S; mkdir -p $S; setsid $STARGZ_BIN -address $S/s.sock -root $S/root -log-level warn -plain-http-host \$REG >$S/log 2>&1 </dev/null & echo \$! >$S/pid; for i in \$(seq 1 200); do [ -S $S/s.sock ] && exit 0; sleep 0.05; done; exit 1" \
        AFTER_RUN="kill \$(cat $S/pid) 2>/dev/null; sleep 0.5; grep ' $S/' /proc/mounts | awk '{print \$2}' | xargs -r -n1 umount -l; rm -rf $S" \
        bash "$SHARED/bench/coldstart-overlayfs.sh" >/dev/null 2>"$o.err" ;;
  esac
  tail -n +2 "$o/raw.tsv" | sed "s/^/$v\t/" >>"$OUT/raw.tsv"
  tail -1 "$OUT/raw.tsv" >&2
}

for prof in $PROFILES; do
  for rep in $(seq 1 "$RUNS"); do
    for v in $VARIANTS; do run_variant "$v" "$prof" "$rep"; done
  done
done

/usr/bin/python3 - "$OUT/raw.tsv" "$OUT/dadi-attach.tsv" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: statistics.median(xs) if xs else float('nan')
print("| profile | variant | n | pull s | ready s | total s | vs overlayfs | registry MB |")
print("|---|---|---|---|---|---|---|---|")
for p in dict.fromkeys(r["profile"] for r in rows):
    base = med([float(r["total_s"]) for r in rows if r["profile"] == p and r["variant"] == "overlayfs"])
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["profile"] == p and r["variant"] == v]
        if not rs: continue
        tot = med([float(r["total_s"]) for r in rs])
        print(f"| {p} | {v} | {len(rs)} | {med([float(r['pull_s']) for r in rs]):.2f} | {med([float(r['ready_s']) for r in rs]):.2f} | "
              f"{tot:.2f} | {tot / base:.2f}x | {med([float(r['reg_MB']) for r in rs]):.1f} |")
att = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
if att:
    print("\n| profile | dadi: open layers ms | NBD+nbdfuse+loop ms | mount ms | rootfs Prepare ms |")
    print("|---|---|---|---|---|")
    for p in dict.fromkeys(r["profile"] for r in att):
        rs = [r for r in att if r["profile"] == p]
        print(f"| {p} | " + " | ".join(f"{med([float(r[c]) for r in rs]):.0f}" for c in ["open_ms", "attach_ms", "mount_ms", "prepare_ms"]) + " |")
PY
