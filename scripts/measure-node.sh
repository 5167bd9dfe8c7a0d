#!/usr/bin/env bash
# Measures what a home node costs: CPU time and peak memory (VmHWM) of `porchlight node`
# recording one 1280x720 test camera, then of an idle node with `--camera none`, each for
# the same wall time (default 300 s; pass another number of seconds as $1).
#
#   scripts/measure-node.sh        # 5 minutes each, as in the README
#   scripts/measure-node.sh 30     # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-300}
camera=${PORCHLIGHT_MEASURE_CAMERA:-front=test:1280x720@15}
cargo build --quiet --release --locked -p porchlight-node
bin=target/release/porchlight
ticks=$(getconf CLK_TCK)

measure() {
    local label=$1
    shift
    local dir
    dir=$(mktemp -d)
    "$bin" --data-dir "$dir/home" init >/dev/null
    RUST_LOG=warn "$bin" --data-dir "$dir/home" node --api 127.0.0.1:0 --clip-seconds 60 "$@" &
    local pid=$!
    sleep "$duration"
    # utime and stime are fields 14 and 15 of /proc/PID/stat (after the command name).
    local stat cpu_ticks hwm
    stat=$(sed 's/^.*) //' "/proc/$pid/stat")
    cpu_ticks=$(awk '{print $12 + $13}' <<<"$stat")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    local clips
    clips=$("$bin" --data-dir "$dir/home" clips list --json | grep -c '"id"' || true)
    kill -TERM "$pid"
    wait "$pid"
    awk -v label="$label" -v t="$cpu_ticks" -v hz="$ticks" -v d="$duration" -v hwm="$hwm" -v clips="$clips" \
        'BEGIN { printf "%-34s cpu %7.1f s over %d s (%5.1f%% of one core)  peak RSS %6.1f MiB  clips %d\n",
                 label, t / hz, d, 100 * t / hz / d, hwm / 1024, clips }'
    rm -rf "$dir"
}

echo "porchlight node cost on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) logical CPUs"
measure "recording ${camera#*=}" --camera "$camera"
measure "idle (--camera none)" --camera none
