#!/bin/sh
# What EXIF costs per output (docs/benchmarks.md, "Metadata"): every PHOTO at full size and at
# resize,l_900 as webp, heic and jpg, converted by BEFORE (an imgfs that carries the source's
# EXIF as it is, e.g. a build of the commit before the metadata policy) and by AFTER (this
# imgfs) with --keep-metadata and --strip-metadata. Prints a Markdown table: the EXIF bytes
# (exiftool -b -EXIF) and the file bytes of each output. The pixels of the three are the same,
# so the file bytes differ by the metadata only.
# Usage: scripts/metadata-bytes.sh BEFORE AFTER PHOTO...
set -eu
before=$1 after=$2
shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
big="--max-output-pixels 100000000"
exif() { exiftool -b -EXIF "$1" | wc -c; }
echo "| photo | source EXIF | output | before: EXIF / file | keep: EXIF / file | strip: EXIF / file |"
echo "|---|---:|---|---:|---:|---:|"
for photo in "$@"; do
    name=$(basename "$photo")
    for size in "" "@resize,l_900"; do
        for format in webp heic jpg; do
            spec="format,$format$size"
            "$before" convert $big "$photo" "$spec" -o "$out/before"
            "$after" convert $big --keep-metadata "$photo" "$spec" -o "$out/keep"
            "$after" convert $big --strip-metadata "$photo" "$spec" -o "$out/strip"
            printf '| %s | %s | %s | %s / %s | %s / %s | %s / %s |\n' "$name" "$(exif "$photo")" \
                "$spec" "$(exif "$out/before")" "$(stat -c %s "$out/before")" \
                "$(exif "$out/keep")" "$(stat -c %s "$out/keep")" \
                "$(exif "$out/strip")" "$(stat -c %s "$out/strip")"
        done
    done
done
