#!/usr/bin/env bash
# Fuzzes imgfs:   scripts/fuzz.sh [SECONDS]   (default 60 s per target)
#
# Installs cargo-fuzz if it is missing, then runs each cargo-fuzz target in fuzz/ for
# SECONDS: `spec` (Spec::parse on arbitrary text in both spellings, checking that the
# canonical text parses back to the same spec) and `pipeline` (decode + convert of
# arbitrary bytes through fixed specs under small limits, checking errno kinds and
# non-empty outputs). The toolchain is stable, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz use
# the nightly flags it needs. Targets build with -O (optimised, no debug assertions: the
# first build compiles libheif and takes long; one with `-a` would be a second build).
# LeakSanitizer skips libx265's own per-encode leak (fuzz/lsan.supp says why). New corpus
# entries go to fuzz/corpus/TARGET/ (ignored by git but for the seed-* files); a crash leaves its input in fuzz/artifacts/TARGET/ and
# makes the script exit non-zero after every target has run.
# Reproduce a crash:  RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET fuzz/artifacts/TARGET/crash-...
# Minimise it:        RUSTC_BOOTSTRAP=1 cargo fuzz tmin -O TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# A target dir of its own: the fuzz build (instrumented, sanitised) shares nothing with
# the normal one, and must not wait on its lock.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

failed=()
for target in $(cargo fuzz list); do
  echo "== fuzzing $target for ${seconds}s"
  # -timeout: an input that takes longer than this counts as a crash (a hang).
  if ! cargo fuzz run -O "$target" -- -max_total_time="$seconds" -timeout=30 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash"
