#!/usr/bin/env python3
"""Encoder tuning sweep (issue 14; docs/benchmarks.md, "Encoder tuning").

Encodes 1024x768 crops of the benchmark photos (two per photo: imgfs's HEIC grid tiles are
1024 px, so a crop is what one x265 run sees) with heif-enc (same libx265 as imgfs; x265
options as `-p x265:NAME=VALUE`) or cwebp (the same libwebp as imgfs), sweeps quality, and
prints each configuration's bytes at equal SSIMULACRA2 and at equal DSSIM against the
reference (heif-enc -q 50, preset slow; or cwebp -q REFQ -m 6 -mt), interpolated between
sweep steps (bytes geometrically), with CPU time at the interpolated point (noisy on a shared
machine: measure the chosen few again, interleaved).

    scripts/tune-sweep.py CONFIGS.json             # {"name": ["preset=ultrafast", "x265:rdoq-level=2"], ...}
    TOOL=webp REFQ=88 QS=70,78,84,88,92,95 scripts/tune-sweep.py webp.json   # {"name": ["-f 80"], ...}

Needs target/release/imgfs-bench (SSIMULACRA2; IMGFS_BENCH=path for another build), the `dssim`
CLI (`cargo install dssim`, or DSSIM=path; DSSIM=score takes `imgfs-bench score`'s DSSIM), vips, heif-enc/heif-convert, cwebp/dwebp. Works in WORK (default
bench-out/tune), caching every point in WORK/cache.json.
"""
import json, os, subprocess, sys, resource, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
B = os.environ.get("IMGFS_BENCH", os.path.join(ROOT, "target/release/imgfs-bench"))
DSSIM = os.environ.get("DSSIM", "dssim")
PHOTOS = os.environ.get("PHOTOS", os.path.join(ROOT, "bench-out/work/photos"))
os.makedirs(os.environ.get("WORK", os.path.join(ROOT, "bench-out/tune")), exist_ok=True)
os.chdir(os.environ.get("WORK", os.path.join(ROOT, "bench-out/tune")))
if not os.path.isdir("crops"):
    os.makedirs("crops")
    for f in sorted(os.listdir(PHOTOS)):
        if f.endswith(".jpg"):
            for x, y in ((600, 400), (2400, 1300)):
                subprocess.run(["vips", "crop", os.path.join(PHOTOS, f), f"crops/{f.split('_')[0]}_{x}.png",
                                str(x), str(y), "1024", "768"], check=True)
CROPS = sorted(f"crops/{f}" for f in os.listdir("crops") if f.endswith(".png"))
QS = [int(q) for q in os.environ.get("QS", "30,40,50,60,70").split(",")]
CACHE = "cache.json"
cache = json.load(open(CACHE)) if os.path.exists(CACHE) else {}


def run(args):
    t0 = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def encode(name, params, crop, q, tool):
    key = f"{name}|{crop}|{q}"
    if key in cache and "ds" in cache[key]:
        return cache[key]
    out = f"out/{name}_{os.path.basename(crop)}_{q}.{'avif' if tool=='avif' else 'heic'}"
    os.makedirs("out", exist_ok=True)
    if tool == "heif":
        args = ["heif-enc", "-q", str(q), "-o", out] + sum((["-p", p] for p in params), []) + [crop]
    elif tool == "webp":
        out = out[:-5] + ".webp"
        args = ["cwebp", "-quiet", "-q", str(q), "-m", "6", "-mt"] + [x for p in params for x in p.split()] + [crop, "-o", out]
    elif tool == "avif":
        args = ["heif-enc", "-A", "-q", str(q), "-o", out] + sum((["-p", p] for p in params), []) + [crop]
    wall, cpu = run(args)
    r = subprocess.run([B, "score", crop, out], check=True, capture_output=True, text=True).stdout.split()
    png = out + ".png"
    if DSSIM == "score":
        d = [r[1]]
    elif out.endswith(".webp"):
        subprocess.run(["dwebp", "-quiet", out, "-o", png], check=True)
    else:
        subprocess.run(["heif-convert", out, png], check=True, stdout=subprocess.DEVNULL)
    if DSSIM != "score":
        d = subprocess.run([DSSIM, crop, png], check=True, capture_output=True, text=True).stdout.split()
        os.remove(png)
    res = {"bytes": os.path.getsize(out), "wall": wall, "cpu": cpu, "s2": float(r[0]), "ds": -float(d[0])}
    cache[key] = res
    json.dump(cache, open(CACHE, "w"))
    return res


def at_score(points, target, m="s2"):
    """bytes and CPU interpolated at `target` score along a sweep sorted by q."""
    pts = sorted(points, key=lambda p: p[m])
    for a, b in zip(pts, pts[1:]):
        if a[m] <= target <= b[m]:
            t = (target - a[m]) / (b[m] - a[m]) if b[m] != a[m] else 0
            # Bytes geometrically (they grow about geometrically with the quality, as BD-rate
            # assumes), CPU linearly: as the benchmark's rate-distortion case.
            return a["bytes"] * (b["bytes"] / a["bytes"]) ** t, a["cpu"] + t * (b["cpu"] - a["cpu"])
    return None, None


def main():
    configs = json.load(open(sys.argv[1]))
    ref_name, ref_params, ref_q = "ref", [], int(os.environ.get("REFQ", "50"))
    tool = os.environ.get("TOOL", "heif")
    refs = {c: encode({"heif": "ref", "webp": "wref", "avif": "aref"}[tool] + (str(ref_q) if ref_q != 50 else ""), ref_params, c, ref_q, tool) for c in CROPS}
    for name, params in configs.items():
        ratios, cpus, dr = [], [], []
        for c in CROPS:
            pts = [encode(name, params, c, q, tool) for q in QS]
            b, cpu = at_score(pts, refs[c]["s2"])
            bd, _ = at_score(pts, refs[c]["ds"], "ds")
            dr.append(bd / refs[c]["bytes"] if bd else float("nan"))
            if b is None:
                ratios.append(float("nan")); cpus.append(float("nan"))
                continue
            ratios.append(b / refs[c]["bytes"]); cpus.append(cpu / refs[c]["cpu"])
        gm = lambda xs: (lambda v: float("nan") if not v else __import__("math").exp(sum(map(__import__("math").log, v)) / len(v)))([x for x in xs if x == x])
        print(f"{name:40s} s2 {gm(ratios):.3f} dssim {gm(dr):.3f}  cpu {gm(cpus):.3f}  per-crop " + " ".join(f"{r:.2f}" for r in ratios), flush=True)


main()
