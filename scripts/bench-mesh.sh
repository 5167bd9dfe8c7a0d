#!/usr/bin/env bash
# `make bench-mesh`: request-to-token latency and 1 GiB fetch throughput between
# `porchlight node` daemons (release build) on loopback, the fetch side by side with scp of
# the same bytes to a private sshd (node/benches/mesh.rs does the measuring and prints the
# table; the raw numbers go to target/tmp/bench-mesh.json).
#
# The scp baseline needs OpenSSH's server. If sshd is missing it is installed here with
# apt-get (and only here: `make test` never installs it). The bench starts its own sshd on
# 127.0.0.1 and a free port from a temporary config and stops it at the end; note that a
# distribution's package may also start its own sshd service when installed.
#
#   scripts/bench-mesh.sh                             # as in the README
#   PORCHLIGHT_BENCH_REQUESTS=100 PORCHLIGHT_BENCH_BYTES=104857600 scripts/bench-mesh.sh
#   PORCHLIGHT_BENCH_SKIP_SCP=1 scripts/bench-mesh.sh # no sshd, porchlight alone
set -euo pipefail
cd "$(dirname "$0")/.."

have_sshd() {
    command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]
}

if [ "${PORCHLIGHT_BENCH_SKIP_SCP:-0}" != 1 ] && ! have_sshd; then
    echo "bench-mesh: installing openssh-server for the scp baseline"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq openssh-server >/dev/null
    have_sshd || { echo "bench-mesh: sshd is still missing after the install" >&2; exit 1; }
fi
if [ "${PORCHLIGHT_BENCH_SKIP_SCP:-0}" != 1 ] && [ ! -d /run/sshd ] && [ "$(id -u)" -ne 0 ]; then
    # sshd refuses to start without its privilege-separation directory.
    sudo mkdir -p /run/sshd
fi

cargo build --release --locked -p porchlight-node
cargo bench --locked -p porchlight-node --bench mesh
