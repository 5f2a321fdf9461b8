#!/usr/bin/env bash
# Interleaved NBD before/after of two checkouts on a shared machine: `dadi serve` of the same
# layer files runs from both at once and fio jobs alternate A, B, A, B..., so load from elsewhere
# hits both alike. Prints, per side, the median IOPS and the median server CPU time per operation
# (user + system of the server process, all threads): CPU per op barely moves with outside load,
# IOPS do. Uses the nbd bench's inputs (run `npm run bench -- nbd` once to build them). On a
# machine busy with other work, run it under `chrt -r 10` (root): the servers and fio then get
# the cores first. Run it twice with A and B swapped; the order alone moves single figures.
#   scripts/nbd-ab.sh DIR_A DIR_B JOB LAYER...
#   JOB = rw:bs:qd (randread:4k:32, read:1m:8); env ROUNDS (6), IOSIZE per run (300M), INPUTS dir
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,10p' "$0"; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); JOB=$3; shift 3
INPUTS=${INPUTS:-${TMPDIR:-/tmp}/dadi-bench-nbd-v1}
IFS=: read -r rw bs qd <<< "$JOB"
layers=(); for l in "$@"; do layers+=("$INPUTS/$l"); done
pids=(); ports=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for d in "$A" "$B"; do
  port=$((20000 + RANDOM % 20000))
  (cd "$d" && DADI_LOG_LEVEL=warn exec node --import tsx src/cli/main.ts serve "${layers[@]}" --listen "tcp:127.0.0.1:$port") >/dev/null 2>&1 &
  pids+=($!); ports+=("$port")
done
for p in "${ports[@]}"; do
  for _ in $(seq 100); do nbdinfo --size "nbd://127.0.0.1:$p" >/dev/null 2>&1 && break; sleep 0.2; done
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results=("" "")
for _ in $(seq "${ROUNDS:-6}"); do
  for k in 0 1; do
    t0=$(ticks "${pids[$k]}")
    json=$(fio --name=ab --ioengine=nbd "--uri=nbd://127.0.0.1:${ports[$k]}" --readonly "--rw=$rw" "--bs=$bs" "--iodepth=$qd" \
      --numjobs=1 "--io_size=${IOSIZE:-300M}" --randrepeat=0 --offset=0 --size=900M --output-format=json 2>/dev/null | sed -n '/^{/,$p')
    t1=$(ticks "${pids[$k]}")
    ios=$(jq '.jobs[0].read.total_ios' <<< "$json"); iops=$(jq '.jobs[0].read.iops | floor' <<< "$json")
    results[$k]+="$iops $(echo "($t1 - $t0) * 1000000 / $hz / $ios" | bc -l)"$'\n'
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
printf '%s %s: load %s\n' "$JOB" "$*" "$(cut -d' ' -f1-3 /proc/loadavg)"
for k in 0 1; do
  side=$([ "$k" = 0 ] && echo "A $A" || echo "B $B")
  iops=$(awk 'NF {print $1}' <<< "${results[$k]}" | median); cpu=$(awk 'NF {print $2}' <<< "${results[$k]}" | median)
  printf '  %-40s median %8.0f IOPS  %7.1f µs CPU/op\n' "$side" "$iops" "$cpu"
done
