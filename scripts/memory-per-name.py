#!/usr/bin/env python3
"""Memory of a mount per distinct variant name, while the kernel holds the names and after it
forgets them. Run as root against a running mount of a directory holding a.png:

    imgfs mount SRC MNT --cache-size 0 &   # no cache: only what names cost
    scripts/memory-per-name.py MNT 20000 1 # then again with 2, 3, ...: new names each round

Prints the mount's VmRSS before, after stat'ing N distinct ~240-byte names, and after
`echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets its entries and tells imgfs)."""
import os
import subprocess
import sys
import time

mnt, n = sys.argv[1], int(sys.argv[2])
round_ = int(sys.argv[3]) if len(sys.argv) > 3 else 0
pid = int(subprocess.check_output(["pgrep", "-f", f"imgfs mount .* {mnt}"]).split()[0])


def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def forget():
    open("/proc/sys/vm/drop_caches", "w").write("2")
    time.sleep(2)


pad = "@sharpen,50" * 19
before = rss_kib()
started = time.time()
for i in range(n):
    name = f"a.png@resize,w_{1 + i % 100},h_{1 + i // 100}{pad}@bright,{round_}"
    os.stat(os.path.join(mnt, name))
took = time.time() - started
held = rss_kib()
forget()
forget()
# One conversion returns freed memory to the system, as the mount does after each one.
os.stat(os.path.join(mnt, f"a.png@resize,w_3000@bright,{round_}"))
time.sleep(1)
after = rss_kib()
print(
    f"{n} names of {len(name)} bytes in {took:.1f} s; VmRSS KiB {before} -> {held} "
    f"({(held - before) * 1024 / n:+.0f} B/name held) -> {after} after the kernel forgot "
    f"them ({(after - before) * 1024 / n:+.0f} B/name)"
)
