#!/usr/bin/env python3
"""Table and plot for examples/bench-databases.sh: bench-report.py RESULTS_DIR [NOTE]"""
import collections
import csv
import datetime
import os
import platform
import subprocess
import sys

results = sys.argv[1]
rows = collections.OrderedDict()
for r in csv.DictReader(open(os.path.join(results, "bench.csv"))):
    rows.setdefault(r["metric"], {})[r["setup"]] = float(r["value"] or 0)
lower_better = ("_us", "_ms", "_s", "_MiB")
out = []
out.append(f"# wcfs vs plain directory vs FUSE passthrough_ll - {datetime.date.today()}, "
           f"{os.cpu_count()} cores, {platform.machine()}, cache on tmpfs with "
           "PMEM_IS_PMEM_FORCE=1 (durability simulated)")
out.append(f"{'metric':32} {'plain':>9} {'wcfs':>9} {'passthru':>9} {'wcfs/plain':>10} "
           f"{'wcfs/passthru':>13} {'tmpfs':>9} {'fuse-tmpfs':>10} {'fuse-tmpfs/plain':>16}")
dat = []
for m, v in rows.items():
    p, w, f = v.get("plain"), v.get("wcfs"), v.get("fuse")
    t, ft = v.get("tmpfs"), v.get("fuse-tmpfs")
    fmt = lambda x: "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")
    r1 = f"{w / p:.2f}x" if p and w is not None else "-"
    r2 = f"{w / f:.2f}x" if f and w is not None else "-"
    r3 = f"{ft / p:.2f}x" if p and ft is not None else "-"
    out.append(f"{m:32} {fmt(p):>9} {fmt(w):>9} {fmt(f):>9} {r1:>10} {r2:>13} {fmt(t):>9} "
               f"{fmt(ft):>10} {r3:>16}")
    if p and w is not None and not m.endswith(lower_better):
        dat.append(f'{len(dat)} "{m}" {w / p:.3f} {(f or 0) / p:.3f} {(ft or 0) / p:.3f}')
out.append("tmpfs: a directory on tmpfs, no disk, fsync free: what any cache could reach. "
           "fuse-tmpfs: passthrough_ll over it: libfuse's reference FUSE path with storage "
           "and fsync free.")
text = "\n".join(out)
print(text)
open(os.path.join(results, "bench.txt"), "w").write(text + "\n")
open(os.path.join(results, "bench-ratios.dat"), "w").write("\n".join(dat) + "\n")
plot = f"""
set terminal png size 1100,520
set termoption noenhanced
set output "{results}/bench.png"
set title "Throughput relative to the plain directory (higher is better), {datetime.date.today()}"
set style data histograms
set style histogram clustered gap 1
set style fill solid border -1
set logscale y
set yrange [0.05:10]
set xtics rotate by -30
set ylabel "ratio to plain directory"
set key top right
plot "{results}/bench-ratios.dat" using 3:xtic(2) title "wcfs", '' using 4 title "FUSE passthrough_ll", \\
     '' using 5 title "passthrough_ll over tmpfs (free storage)"
"""
subprocess.run(["gnuplot"], input=plot.encode(), check=False)
