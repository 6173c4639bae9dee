#!/usr/bin/env bash
# Installs the Debian 12 packages imgfs needs to build, test and benchmark.
# Idempotent: only missing packages are installed, so a second run costs a second.
set -euo pipefail

# Build: libheif is built from the crate's vendored source (Debian's 1.15 is too old for
# libheif-rs) against Debian's x265 (HEVC encoder), libde265 (HEVC decoder), libaom (AV1
# encoder) and dav1d (AV1 decoder); libjpeg-turbo 3 is built from source with nasm (SIMD).
BUILD="build-essential cmake nasm pkg-config libx265-dev libde265-dev libnuma-dev libaom-dev libdav1d-dev fuse3"
# Tests: independent decoders, a real web server, a load tool, the CJK watermark font, and
# real photos (Debian's lomiri wallpapers: the quality-target tests and the benchmark), and
# mkfs.ext4 (a source file system without birth times).
TEST="libheif-examples webp imagemagick nginx caddy curl wrk rsync libimage-exiftool-perl icc-profiles-free fonts-wqy-zenhei procps psmisc lomiri-wallpapers-20.04 e2fsprogs acl"
# Benchmark: the reference tools (avifenc: the rd case's AVIF reference).
BENCH="libvips-tools hyperfine libavif-bin"

want="$BUILD $TEST"
case "${1:-}" in
  --bench) want="$want $BENCH" ;;
esac

missing=()
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Rust toolchain is the machine's own (rustup); clippy and rustfmt come with it.
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust with rustup first" >&2; exit 1; }
