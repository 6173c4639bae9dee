#!/usr/bin/env bash
# The imgfs benchmark (issue 4): imgfs vs vipsthumbnail / heif-enc / cwebp / avifenc on real photos,
# plus first read, throughput, ls and peak RSS through a real mount, and rate–distortion at equal
# quality (rd: SSIMULACRA2 and DSSIM; plots in the output dir, docs/rd.svg on a full run).
#
#   scripts/bench.sh            full run (~15 min on 2 cores); tables in bench-out/results.md (smoke: bench-out/smoke/)
#   scripts/bench.sh --smoke    a couple of small cases, one repetition (< 3 min); CI runs this
#   scripts/bench.sh [--photos DIR] [--reps N] [--only resize,full,first,throughput,ls,rss,defaults,presets,disk,warm,rd]
#
# Needs root (or fusermount3 and /dev/fuse access) for the mount cases.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-debian.sh --bench

# The smoke mode only checks that every case runs: it uses the debug build the tests made
# (dependencies are optimised there too), so CI compiles nothing twice. Real runs use release.
if [[ " $* " == *" --smoke "* ]]; then
  cargo build --quiet -p imgfs -p imgfs-bench
  dir=target/debug
else
  cargo build --release --quiet -p imgfs -p imgfs-bench
  dir=target/release
fi
exec "$dir/imgfs-bench" --imgfs "$dir/imgfs" "$@"
