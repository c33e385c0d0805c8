#!/usr/bin/env python3
"""The tables of docs/scale.md: the compute of the paper's CIFAR-10 and ImageNet figures (from reslab's FLOP
counter) and the wall time each would take here, on N such machines and on an H100, from measured rates.

Usage: scripts/scale_table.py path/to/reslab [docs/perf]
Reads docs/perf/scale/{step-single_resnet56_*.json, allreduce-2ranks-loopback.json} (this machine) and
docs/perf/h100-run3/reslab-resnet56.json (the H100); prints Markdown.
"""
import glob
import json
import math
import os
import statistics
import subprocess
import sys

reslab = sys.argv[1] if len(sys.argv) > 1 else "build/apps/reslab"
perf = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "docs", "perf")

CIFAR = ["--dataset", "cifar10"]
IMAGENET = ["--input", "3x224x224", "--classes", "1000"]
# name, nets (model, info args), iterations, batch: the paper's schedules.
FIGURES = [
    ("CIFAR-10 Fig. 6 left: plain-20/32/44/56",
     [(f"plain{d}", CIFAR) for d in (20, 32, 44, 56)], 64000, 128),
    ("CIFAR-10 Fig. 6 middle: ResNet-20/32/44/56/110",
     [(f"resnet{d}", CIFAR) for d in (20, 32, 44, 56, 110)], 64000, 128),
    ("CIFAR-10 Fig. 6 right: ResNet-1202 (and 110, above)", [("resnet1202", CIFAR)], 64000, 128),
    ("ImageNet Fig. 4: plain-18/34, ResNet-18/34 (option A)",
     [(m, IMAGENET + ["--shortcut", "A"]) for m in ("plain18", "plain34", "resnet18", "resnet34")], 600000, 256),
    ("ImageNet Tables 3-4: ResNet-50/101/152 (option B)",
     [(m, IMAGENET + ["--shortcut", "B"]) for m in ("resnet50", "resnet101", "resnet152")], 600000, 256),
]
MIN_PER_RANK = 8  # BN statistics over fewer images per rank stop being the paper's BN
NS = [1, 2, 4, 8, 16, 32, 64]


def info(model, args):
    out = subprocess.run([reslab, "info", model, *args, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def load(path):
    with open(path) as f:
        return json.load(f)


# This machine's training rate in multiply-adds per second (forward x 3), measured on resnet56's step.
cpu_rate = statistics.median(load(p)["macs_per_s"] for p in glob.glob(os.path.join(perf, "scale", "step-single_resnet56_*.json")))
gpu_rate = load(os.path.join(perf, "h100-run3", "reslab-resnet56.json"))["macs_per_s"]
# The all-reduce between two ranks (a ring of two): t(bytes) = 2 alpha + bytes / bw. alpha from the smallest
# message, bw from the least-squares slope over the sizes of 1 MiB and more.
ar = sorted(load(os.path.join(perf, "scale", "allreduce-2ranks-loopback.json"))["allreduce"], key=lambda r: r["bytes"])
alpha = ar[0]["seconds"] / 2
big = [r for r in ar if r["bytes"] >= 2**20]
xs = [r["bytes"] for r in big]
ys = [r["seconds"] for r in big]
mx, my = statistics.mean(xs), statistics.mean(ys)
bw = sum((x - mx) ** 2 for x in xs) / sum((x - mx) * (y - my) for x, y in zip(xs, ys))


def allreduce_s(nbytes, n):
    """Gloo's ring all-reduce among n ranks: 2(n-1) latencies, 2(n-1)/n of the bytes through each link."""
    return 0.0 if n == 1 else 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / bw


def duration(s):
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


print(f"Rates used: this machine trains at {cpu_rate / 1e9:.1f} G multiply-adds/s (resnet56's step, 2 threads, median of "
      f"the runs in docs/perf/scale/); the H100 at {gpu_rate / 1e12:.2f} T/s (resnet56's step, docs/perf/h100-run3/). "
      f"All-reduce from the 2-rank loopback measurements: latency {alpha * 1e3:.2f} ms per ring step, "
      f"{bw / 1e9:.2f} GB/s per link.\n")
print("| figure | nets | training multiply-adds | all-reduce per step | this machine | H100 (extrapolated) |")
print("| --- | --- | --- | --- | --- | --- |")
rows = []
for title, nets, iters, batch in FIGURES:
    details = [(m, info(m, a)) for m, a in nets]
    images = iters * batch
    macs = [3 * d["flops"] * images for _, d in details]
    grad_bytes = max(d["params"] * 4 for _, d in details)
    here = sum(macs) / cpu_rate
    gpu = sum(macs) / gpu_rate
    print(f"| {title} | {len(nets)} | {sum(macs) / 1e15:.1f} P | up to {grad_bytes / 2**20:.1f} MiB "
          f"| {duration(here)} | {duration(gpu)} |")
    rows.append((title, details, macs, iters, batch))

print("\nOn N machines like this one, two ways (time for the whole figure; efficiency = one machine's time / (N x "
      "this)). *Array*: one net per machine (reslab slurm), the nets shared out longest first. *Data-parallel*: "
      "every net on all N machines in turn (reslab train under srun), step = compute / N + the ring all-reduce, "
      f"no overlap credited; '-' where a rank's share of the batch would fall below {MIN_PER_RANK} images.\n")
print("| figure | way | " + " | ".join(f"N={n}" for n in NS) + " |")
print("| --- | --- | " + " | ".join("---" for _ in NS) + " |")
for title, details, macs, iters, batch in rows:
    one = sum(macs) / cpu_rate
    array_cells, dp_cells = [], []
    for n in NS:
        loads = [0.0] * n
        for m in sorted(macs, reverse=True):
            loads[loads.index(min(loads))] += m / cpu_rate
        t = max(loads)
        array_cells.append(f"{duration(t)} ({one / (n * t):.0%})")
        if batch / n < MIN_PER_RANK:
            dp_cells.append("-")
            continue
        t = 0.0
        for (_, d), m in zip(details, macs):
            t += m / cpu_rate / n + iters * allreduce_s(d["params"] * 4, n)
        dp_cells.append(f"{duration(t)} ({one / (n * t):.0%})")
    print(f"| {title} | array | " + " | ".join(array_cells) + " |")
    print(f"| | data-parallel | " + " | ".join(dp_cells) + " |")
