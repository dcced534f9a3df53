#!/usr/bin/env bash
# raftlet-kv against openraft, in one run on one machine: 3-node clusters on loopback, driven by
# the same load generator (`raftlet-kv bench`, closed-loop clients writing to the leader),
# interleaved round by round so that both see the same machine. Prints the median of each
# figure over the rounds, and raftlet's ratio to openraft with equal durability.
#
#   bash benches/compare-openraft.sh [--rounds 3] [--clients 32] [--duration 10] [--value-bytes 16]
#
# Systems, each a 3-process cluster (see benches/kv-load.sh):
#   raftlet          raftlet-kv serve: segmented log; a write is acknowledged once a majority
#                    hold it fdatasync'd (the leader may sync its own copy up to 2 ms later)
#   openraft         benches/peers/openraft-kv: openraft 0.9.25, log and vote fdatasync'd
#   raftlet-memory   raftlet-kv serve --in-memory: no disk (not durable)
#   openraft-nosync  openraft-kv --no-fsync: no fdatasync (not durable)
# Building the openraft peer the first time takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --clients|--duration|--value-bytes) pass+=("$1" "$2"); shift 2 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done
out=$(mktemp)
systems=(raftlet openraft raftlet-memory openraft-nosync)
for r in $(seq 1 "$rounds"); do
    for s in "${systems[@]}"; do
        echo "round $r/$rounds: $s" >&2
        bash benches/kv-load.sh --system "$s" --json "${pass[@]}" 2>/dev/null | tail -1 >>"$out"
    done
done
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["system"], []).append(r)
def med(system, key):
    return statistics.median(r[key] for r in by[system])
keys = [("writes_per_sec", "writes/s", "{:,.0f}"), ("p50_us", "p50 ms", None), ("p99_us", "p99 ms", None),
        ("p999_us", "p99.9 ms", None), ("leader_syncs_per_write", "fdatasync/write leader", "{:.3f}"),
        ("follower_syncs_per_write", "follower", "{:.3f}"), ("server_cpu_us_per_write", "server CPU us/write", "{:.1f}")]
def cell(system, key, fmt):
    v = med(system, key)
    return f"{v/1e3:.2f}" if fmt is None else fmt.format(v)
n = len(next(iter(by.values())))
c = rows[0]["clients"]; b = rows[0]["value_bytes"]
print(f"\n{c} clients, {b}-byte values, 3 nodes on loopback; median of {n} interleaved rounds\n")
print("| system | " + " | ".join(k[1] for k in keys) + " |")
print("|---|" + "---:|" * len(keys))
for s in ["raftlet", "openraft", "raftlet-memory", "openraft-nosync"]:
    if s in by:
        print(f"| {s} | " + " | ".join(cell(s, k, f) for k, _, f in keys) + " |")
def ratio(a, b, key, invert=False):
    x, y = med(a, key), med(b, key)
    return (y / x) if invert else (x / y)
print()
for a, b, what in [("raftlet", "openraft", "durable"), ("raftlet-memory", "openraft-nosync", "not durable")]:
    if a in by and b in by:
        print(f"{what}: raftlet/openraft writes/s {ratio(a, b, 'writes_per_sec'):.2f}x, "
              f"p50 {ratio(a, b, 'p50_us', True):.2f}x lower, p99 {ratio(a, b, 'p99_us', True):.2f}x lower, "
              f"CPU per write {ratio(a, b, 'server_cpu_us_per_write'):.2f} of openraft's")
EOF
rm -f "$out"
