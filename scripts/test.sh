#!/usr/bin/env bash
# The README's second command: installs what is missing and runs every test (unit tests,
# real FUSE mounts, nginx, the binary's life cycle, and the benchmark's smoke mode).
# Needs root (or CAP_SYS_ADMIN) and /dev/fuse, as FUSE mounts do.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo test --workspace --all-targets
if [ -x scripts/bench.sh ]; then
  scripts/bench.sh --smoke
fi
