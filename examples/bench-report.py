#!/usr/bin/env python3
"""Table and plot for the benchmark scripts' CSV (setup,metric,value):

  bench-report.py RESULTS_DIR [NOTE] [--name NAME] [--cache DESCRIPTION]

Reads RESULTS_DIR/NAME.csv (NAME: bench, as examples/bench-databases.sh writes it), writes
NAME.txt (the table), NAME-ratios.dat and NAME.png (gnuplot, if installed). A metric measured
more than once for a setup (several rounds) shows its median. Setups: plain, wcfs, fuse
(passthrough_ll), and the bounds tmpfs and fuse-tmpfs, whose columns show only when measured.
NOTE, if given, is printed under the title line."""
import argparse
import collections
import csv
import datetime
import os
import platform
import shutil
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("results")
ap.add_argument("note", nargs="?", default="")
ap.add_argument("--name", default="bench")
ap.add_argument("--cache", default="cache on tmpfs with PMEM_IS_PMEM_FORCE=1 "
                "(durability simulated)")
args = ap.parse_args()
results, name = args.results, args.name

values = collections.OrderedDict()
for r in csv.DictReader(open(os.path.join(results, name + ".csv"))):
    values.setdefault(r["metric"], {}).setdefault(r["setup"], []).append(float(r["value"] or 0))
rows = collections.OrderedDict(
    (m, {s: statistics.median(v) for s, v in by.items()}) for m, by in values.items())
bounds = any(("tmpfs" in v or "fuse-tmpfs" in v) for v in rows.values())
lower_better = ("_us", "_ms", "_s", "_MiB", "_per_op")
out = []
out.append(f"# wcfs vs plain directory vs FUSE passthrough_ll - {datetime.date.today()}, "
           f"{os.cpu_count()} cores, {platform.machine()}, {args.cache}")
if args.note:
    out.append(f"# {args.note}")
head = (f"{'metric':32} {'plain':>9} {'wcfs':>9} {'passthru':>9} {'wcfs/plain':>10} "
        f"{'wcfs/passthru':>13}")
if bounds:
    head += f" {'tmpfs':>9} {'fuse-tmpfs':>10} {'fuse-tmpfs/plain':>16}"
out.append(head)
dat = []
for m, v in rows.items():
    p, w, f = v.get("plain"), v.get("wcfs"), v.get("fuse")
    t, ft = v.get("tmpfs"), v.get("fuse-tmpfs")
    fmt = lambda x: "-" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100
                                           else f"{x:.0f}")
    r1 = f"{w / p:.2f}x" if p and w is not None else "-"
    r2 = f"{w / f:.2f}x" if f and w is not None else "-"
    r3 = f"{ft / p:.2f}x" if p and ft is not None else "-"
    line = f"{m:32} {fmt(p):>9} {fmt(w):>9} {fmt(f):>9} {r1:>10} {r2:>13}"
    if bounds:
        line += f" {fmt(t):>9} {fmt(ft):>10} {r3:>16}"
    out.append(line)
    if p and w is not None and not m.endswith(lower_better):
        dat.append(f'{len(dat)} "{m}" {w / p:.3f} {(f or 0) / p:.3f} {(ft or 0) / p:.3f}')
if bounds:
    out.append("tmpfs: a directory on tmpfs, no disk, fsync free: what any cache could reach. "
               "fuse-tmpfs: passthrough_ll over it: libfuse's reference FUSE path with storage "
               "and fsync free.")
text = "\n".join(out)
print(text)
open(os.path.join(results, name + ".txt"), "w").write(text + "\n")
open(os.path.join(results, name + "-ratios.dat"), "w").write("\n".join(dat) + "\n")
ratios = [float(x) for d in dat for x in d.rsplit(" ", 3)[1:] if float(x) > 0]
lo = min([0.05] + [r / 2 for r in ratios])
hi = max([10] + [r * 2 for r in ratios])
series = f'plot "{results}/{name}-ratios.dat" using 3:xtic(2) title "wcfs"'
if any("fuse" in v for v in rows.values()):
    series += ", '' using 4 title \"FUSE passthrough_ll\""
if bounds:
    series += ", '' using 5 title \"passthrough_ll over tmpfs (free storage)\""
plot = f"""
set terminal png size 1100,520
set termoption noenhanced
set output "{results}/{name}.png"
set title "Throughput relative to the plain directory (higher is better), {datetime.date.today()}"
set style data histograms
set style histogram clustered gap 1
set style fill solid border -1
set logscale y
set yrange [{lo:.3g}:{hi:.3g}]
set xtics rotate by -30
set ylabel "ratio to plain directory"
set key top right
{series}
"""
if shutil.which("gnuplot"):
    subprocess.run(["gnuplot"], input=plot.encode(), check=False)
else:
    print(f"(no gnuplot: {name}.png not drawn)")
