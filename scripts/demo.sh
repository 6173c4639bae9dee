#!/usr/bin/env bash
# The README's first command: installs what is missing, builds imgfs and mounts a demo photo
# directory (or SOURCE MOUNTPOINT if given) in the foreground. Ctrl-C unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo build --release
BIN=target/release/imgfs

if [ $# -ge 2 ]; then
  SRC=$1 MNT=$2
else
  SRC=/tmp/imgfs-demo/photos MNT=/tmp/imgfs-demo/mnt
  mkdir -p "$SRC"
  # Demo photos made locally: a 12 MP photo-like JPEG with an EXIF orientation, a
  # transparent PNG whose name has an @, and an animated GIF.
  [ -f "$SRC/sample.jpg" ] || {
    /usr/bin/convert -size 4000x3000 plasma:orange-teal -seed 42 -quality 92 "$SRC/sample.jpg"
    exiftool -q -overwrite_original -Make=imgfs-demo "$SRC/sample.jpg"
  }
  [ -f "$SRC/logo@2x.png" ] || /usr/bin/convert -size 512x512 xc:none -fill '#2a7ae2' \
    -draw 'circle 256,256 256,40' "$SRC/logo@2x.png"
  [ -f "$SRC/spinner.gif" ] || /usr/bin/convert -size 96x96 xc:white \( +clone -fill red -draw 'rectangle 0,0 48,48' \) \
    \( +clone -fill blue -draw 'rectangle 48,48 96,96' \) -set delay 20 -loop 0 "$SRC/spinner.gif"
fi
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then fusermount3 -u "$MNT" || umount -l "$MNT"; fi

cat <<EOT
imgfs: mounting $SRC at $MNT (Ctrl-C to unmount). In another terminal, try:
  ls -l $MNT
  stat -c %s '$MNT/sample.jpg@format,heic@resize,l_900,h_600'
  heif-info '$MNT/sample.jpg@format,heic@resize,l_900,h_600'
  cp '$MNT/sample.jpg@format,webp@resize,w_900' /tmp/sample-900.webp
  cat '$MNT/sample.jpg@info'
  cat '$MNT/logo@2x.png@resize,w_64@format,webp' | wc -c
EOT
exec "$BIN" mount "$SRC" "$MNT"
