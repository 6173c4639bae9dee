#!/usr/bin/env python3
"""Q_N for HEIC and AVIF against libheif's heif-enc (issue 14; README, "What Q_N means").

Encodes the three benchmark photos, full size, with heif-enc (`-q N`, and `-A` for AVIF: Debian's
libheif 1.15 at its defaults, x265 preset slow / libaom speed 6) and with imgfs
(`imgfs convert SRC 'format,FMT@quality,Q_N'`), scores every output with `imgfs-bench score`
(SSIMULACRA2 against the decoded source) and prints per N the mean score and mean bytes of
heif-enc, of imgfs without the mapping (BEFORE) and with it (IMGFS).

With BEFORE set it also sweeps BEFORE over encoder qualities (QS) and prints, per N, the encoder
quality at which BEFORE's mean score meets heif-enc's mean score at N (linear between sweep
steps): the anchors of `heic_quality` / `avif_quality` in src/pipeline/codec/heif.rs.

    scripts/quality-map.py heic                          # heif-enc and imgfs (IMGFS) per N
    BEFORE=/path/to/imgfs-without-mapping scripts/quality-map.py heic    # + calibration
    NS=30,50,70 scripts/quality-map.py avif
    NS=50 IMGFS_ARGS="--heic-preset slow" scripts/quality-map.py heic

IMGFS defaults to target/release/imgfs (CARGO_TARGET_DIR honoured), imgfs-bench likewise.
BEFORE is an imgfs built from a commit before the mapping (e.g. `git worktree add` of the
commit before "HEIC/AVIF quality mapping", then `cargo build --release`). Works in WORK
(default bench-out/qmap), caching every point in WORK/cache.json (keyed by encoder, photo and
quality; an imgfs binary by its hash).
"""
import hashlib, json, os, subprocess, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
IMGFS = os.environ.get("IMGFS", os.path.join(TARGET, "release/imgfs"))
BENCH = os.environ.get("BENCH", os.path.join(TARGET, "release/imgfs-bench"))
BEFORE = os.environ.get("BEFORE")
# Extra `imgfs convert` options for both imgfs binaries, e.g. "--heic-preset slow".
EXTRA = os.environ.get("IMGFS_ARGS", "").split()
PHOTO_DIR = os.environ.get("PHOTOS", "/usr/share/backgrounds")
PHOTOS = [os.path.join(PHOTO_DIR, f) for f in
          ("Fossa_by_Jasper_Roks.jpg", "Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg")]
NS = [int(n) for n in os.environ.get("NS", "1,10,20,30,40,50,60,70,80,90,100").split(",")]
QS = [int(q) for q in os.environ.get(
    "QS", "1,5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95,100").split(",")]
WORK = os.environ.get("WORK", os.path.join(ROOT, "bench-out/qmap"))
os.makedirs(os.path.join(WORK, "out"), exist_ok=True)
CACHE = os.path.join(WORK, "cache.json")
cache = json.load(open(CACHE)) if os.path.exists(CACHE) else {}


def encode_args(encoder, fmt, photo, q, out):
    if encoder == "heif-enc":
        return ["heif-enc"] + (["-A"] if fmt == "avif" else []) + ["-q", str(q), "-o", out, photo]
    binary = {"imgfs": IMGFS, "before": BEFORE}[encoder]
    return [binary, "convert", photo, f"format,{fmt}@quality,Q_{q}", "-o", out,
            "--max-output-pixels", "100000000"] + EXTRA


def version(encoder):
    """What the cache keys an encoder's points by: heif-enc, or the imgfs binary's hash."""
    if encoder == "heif-enc":
        return encoder
    with open({"imgfs": IMGFS, "before": BEFORE}[encoder], "rb") as f:
        return "imgfs-" + hashlib.sha256(f.read()).hexdigest()[:12] + "".join(EXTRA)


def points(encoder, fmt, qs):
    """{q: [per-photo {"s2", "bytes"}]}, encoding and scoring what the cache lacks."""
    tag = version(encoder)
    for photo in PHOTOS:
        name = os.path.basename(photo).split("_")[0]
        todo = []
        for q in qs:
            key = f"{tag}|{fmt}|{name}|{q}"
            if key not in cache:
                out = os.path.join(WORK, "out", f"{encoder}_{name}_{q}.{fmt}")
                print(f"  {key}", file=sys.stderr, flush=True)
                subprocess.run(encode_args(encoder, fmt, photo, q, out), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                todo.append((key, out))
        if todo:
            lines = subprocess.run([BENCH, "score", photo] + [o for _, o in todo], check=True,
                                   capture_output=True, text=True).stdout.splitlines()
            for (key, out), line in zip(todo, lines):
                s2, _dssim, _size, size_bytes, _ = line.split("\t")
                cache[key] = {"s2": float(s2), "bytes": int(size_bytes)}
                os.remove(out)
            json.dump(cache, open(CACHE, "w"), indent=0, sort_keys=True)
    names = [os.path.basename(p).split("_")[0] for p in PHOTOS]
    return {q: [cache[f"{tag}|{fmt}|{n}|{q}"] for n in names] for q in qs}


def mean(xs):
    return sum(xs) / len(xs)


def means(pts):
    return {q: (mean([p["s2"] for p in v]), mean([p["bytes"] for p in v])) for q, v in pts.items()}


def invert(curve, target):
    """The encoder quality where `curve` ({q: mean score}) first reaches `target`, linear
    between steps, within the swept range."""
    qs = sorted(curve)
    if target <= curve[qs[0]]:
        return float(qs[0])
    for a, b in zip(qs, qs[1:]):
        if curve[a] <= target <= curve[b] and curve[b] > curve[a]:
            return a + (target - curve[a]) / (curve[b] - curve[a]) * (b - a)
    return float(qs[-1])


def main():
    fmt = sys.argv[1] if len(sys.argv) > 1 else "heic"
    assert fmt in ("heic", "avif"), "heic or avif"
    ref = means(points("heif-enc", fmt, NS))
    after = means(points("imgfs", fmt, NS)) if os.path.exists(IMGFS) else None
    before = means(points("before", fmt, sorted(set(QS) | set(NS)))) if BEFORE else None
    label = "heif-enc -A" if fmt == "avif" else "heif-enc"
    head = f"| N | {label}: SSIMULACRA2, KB |"
    if before:
        head += " imgfs before: SSIMULACRA2, KB | encoder quality for heif-enc's score |"
    if after:
        head += " imgfs (IMGFS): SSIMULACRA2, KB | Δ score |"
    print(f"{fmt}: mean over {len(PHOTOS)} photos, full size")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    anchors = []
    for n in NS:
        s, b = ref[n]
        row = f"| {n} | {s:.1f}, {b / 1000:.0f} |"
        if before:
            q = invert({q: v[0] for q, v in before.items()}, s)
            anchors.append((n, q))
            bs, bb = before[n]
            row += f" {bs:.1f}, {bb / 1000:.0f} | {q:.1f} |"
        if after:
            a_s, ab = after[n]
            row += f" {a_s:.1f}, {ab / 1000:.0f} | {a_s - s:+.1f} |"
        print(row)
    if anchors:
        # Rounded, clamped to 1..=100 and made monotone: the table for heif.rs.
        table, last = [], 1
        for n, q in anchors:
            last = max(last, min(100, max(1, round(q))))
            table.append((n, last))
        print("anchors (N, encoder quality):", ", ".join(f"({n}, {q})" for n, q in table))
        print("before sweep (encoder quality: mean SSIMULACRA2, KB):",
              ", ".join(f"{q}: {v[0]:.1f}, {v[1] / 1000:.0f}" for q, v in sorted(before.items())))


main()
