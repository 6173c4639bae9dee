#!/usr/bin/env bash
# The imgfs benchmark (issue 4): imgfs vs vipsthumbnail / heif-enc / cwebp on real photos,
# plus first read, throughput, ls and peak RSS through a real mount.
#
#   scripts/bench.sh            full run (~15 min on 2 cores); tables in bench-out/results.md
#   scripts/bench.sh --smoke    a couple of small cases, one repetition (< 3 min); CI runs this
#   scripts/bench.sh [--photos DIR] [--reps N] [--only resize,full,first,throughput,ls,rss,defaults,presets]
#
# Needs root (or fusermount3 and /dev/fuse access) for the mount cases.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-debian.sh --bench

# The bench crate is not a member of the root workspace; its own target dir avoids
# fighting over the root target lock with other builds.
cargo build --release --quiet
CARGO_TARGET_DIR="$PWD/target/bench" cargo build --release --quiet --manifest-path bench/Cargo.toml

mkdir -p bench-out
exec target/bench/release/imgfs-bench --imgfs target/release/imgfs --out bench-out "$@"
