#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a Debian/Ubuntu machine, and nothing
# else: the system packages (via apt-get, only when missing) and cargo-nextest (via cargo,
# only when missing). Safe to run again; it changes nothing when all is present.
set -euo pipefail

# System packages the build and tests need: GStreamer's development files and the plugins
# the capture pipeline uses (videotestsrc: base; the test camera's clock overlay: x; v4l2,
# rtsp, mp4 muxing: good; h264parse: bad; x264enc: ugly; decoders for file cameras that are
# not H.264: libav), and ffprobe to check exported clips. Chromium joins with the browser
# tests.
packages=(
    pkg-config
    libgstreamer1.0-dev
    libgstreamer-plugins-base1.0-dev
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly
    gstreamer1.0-x
    gstreamer1.0-libav
    ffmpeg
)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found; install Rust (stable, 1.85 or newer) with rustup, then run this again" >&2
    exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
fi
