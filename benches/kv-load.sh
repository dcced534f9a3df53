#!/usr/bin/env bash
# Load test of raftlet-kv: a 3-node cluster of `raftlet-kv serve` processes on loopback, each with
# its own data directory (fsync'd log), driven by `raftlet-kv bench` (closed-loop clients writing
# to the leader). Prints throughput, latency percentiles, fdatasync calls per write on the leader
# and the followers, and the servers' CPU time per write.
#
#   bash benches/kv-load.sh [--system raftlet|openraft] [--clients 32] [--duration 10]
#                           [--value-bytes 16] [--runs 1] [--json] [--server-args "ARGS"]
#                           [--bin PATH]
#
# --system openraft runs the peer in benches/peers/openraft-kv (same client protocol, same
# durability) instead of raftlet-kv; openraft-nosync runs it without fdatasync (not durable:
# openraft's ceiling on this machine), raftlet-memory runs raftlet-kv with its log in memory
# (not durable either). The load generator is raftlet-kv's in every case.
#
# The data directories go under $RAFTLET_BENCH_DIR (default target/kv-load): keep them on a real
# disk, not a tmpfs, or fsync costs nothing. benches/compare-openraft.sh runs this beside the
# openraft peer. --bin runs another raftlet-kv binary (an older build, for a before-and-after
# comparison on the same machine) as the servers and the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=32 duration=10 value_bytes=16 runs=1 json=0 system=raftlet extra=() bin=
while [ $# -gt 0 ]; do
    case "$1" in
        --system) system=$2; shift 2 ;;
        --server-args) extra=($2); shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --value-bytes) value_bytes=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --json) json=1; shift ;;
        --bin) bin=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done
if [ -z "$bin" ]; then
    cargo build --release -q -p raftlet-tokio --bin raftlet-kv
    bin=target/release/raftlet-kv
fi
case "$system" in
    raftlet) server=("$bin" serve --insecure) ;;
    raftlet-memory) server=("$bin" serve --insecure --in-memory) ;;
    openraft)
        cargo build --release -q --manifest-path benches/peers/openraft-kv/Cargo.toml
        server=(benches/peers/openraft-kv/target/release/openraft-kv) ;;
    openraft-nosync)
        cargo build --release -q --manifest-path benches/peers/openraft-kv/Cargo.toml
        server=(benches/peers/openraft-kv/target/release/openraft-kv --no-fsync) ;;
    *) echo "unknown system $system" >&2; exit 64 ;;
esac
root=${RAFTLET_BENCH_DIR:-target/kv-load}
clk=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
status_field() { # status_field ADDR NAME: a field of the node's status (raftlet-kv status --json)
    "$bin" status --addr "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][sys.argv[1]])' "$2"
}

for run in $(seq 1 "$runs"); do
    rm -rf "$root"; mkdir -p "$root"
    ports=($(free_port) $(free_port) $(free_port))
    peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
    pids=()
    for i in 1 2 3; do
        "${server[@]}" "${extra[@]}" --id $i --peers "$peers" --data "$root/node-$i" 2>"$root/node-$i.log" &
        pids+=($!)
    done
    trap 'kill ${pids[*]} 2>/dev/null || true' EXIT
    addrs="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    sleep 1
    before=(); syncs_before=()
    for k in 0 1 2; do
        before+=($(cpu_ticks "${pids[$k]}"))
    done
    # The warm-up's writes count in the CPU and sync totals; measure them separately.
    "$bin" bench --addr "$addrs" --clients "$clients" --duration 1 --warmup 1 --value-bytes "$value_bytes" --json >"$root/warm.json" 2>/dev/null
    for k in 0 1 2; do
        before[$k]=$(cpu_ticks "${pids[$k]}")
        syncs_before+=($(status_field "127.0.0.1:${ports[$k]}" syncs))
    done
    "$bin" bench --addr "$addrs" --clients "$clients" --duration "$duration" --warmup 0 --value-bytes "$value_bytes" --json >"$root/bench.json"
    cpu=0; leader_syncs=0; follower_syncs=0; followers=0
    for k in 0 1 2; do
        a="127.0.0.1:${ports[$k]}"
        t=$(( $(cpu_ticks "${pids[$k]}") - before[$k] ))
        cpu=$((cpu + t))
        s=$(( $(status_field "$a" syncs) - syncs_before[$k] ))
        if [ "$(status_field "$a" role)" = Leader ]; then
            leader_syncs=$s
        else
            follower_syncs=$((follower_syncs + s)); followers=$((followers + 1))
        fi
    done
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    trap - EXIT
    python3 - "$root/bench.json" "$cpu" "$clk" "$leader_syncs" "$follower_syncs" "$followers" "$json" "$system" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
cpu, clk, ls, fs, nf, as_json = (int(x) for x in sys.argv[2:8])
r["system"] = sys.argv[8]
w = max(r["writes"], 1)
r["server_cpu_us_per_write"] = round(cpu / clk * 1e6 / w, 1)
r["leader_syncs_per_write"] = round(ls / w, 3)
r["follower_syncs_per_write"] = round(fs / max(nf, 1) / w, 3)
if as_json:
    print(json.dumps(r))
else:
    print(f"{r['system']}: {r['writes_per_sec']:.0f} writes/s, p50 {r['p50_us']/1e3:.2f} ms, p90 {r['p90_us']/1e3:.2f} ms, "
          f"p99 {r['p99_us']/1e3:.2f} ms, p99.9 {r['p999_us']/1e3:.2f} ms; fdatasync per write leader {r['leader_syncs_per_write']}, "
          f"follower {r['follower_syncs_per_write']}; server CPU {r['server_cpu_us_per_write']} us/write; errors {r['errors']}")
EOF
done
