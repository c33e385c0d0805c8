#!/usr/bin/env python3
"""Time per epoch and peak memory against depth, from `reslab bench --json` rows (one JSON object or a list per
file, or JSON lines), as in docs/performance.md:

    plot_depth.py OUT.png BENCH.json... [--epoch-images 60000]
"""
import argparse
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows_of(path):
    text = open(path).read()
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--epoch-images", type=int, default=60000)
    args = parser.parse_args()
    best = {}
    for path in args.files:
        for r in rows_of(path):
            m = re.fullmatch(r"resnet(\d+)", str(r.get("model", "")))
            if not m or "train_img_per_s" not in r:
                continue
            depth = int(m.group(1))
            # The first row of each depth (a baseline), unless a row is labelled "depth".
            if depth not in best or r.get("label") == "depth":
                best[depth] = r
    if len(best) < 2:
        sys.exit("error: need bench rows for at least two resnet depths")
    depths = sorted(best)
    minutes = [args.epoch_images / best[d]["train_img_per_s"] / 60 for d in depths]
    memory = [best[d]["peak_rss_mb"] / 1024 for d in depths]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(depths, minutes, "o-")
    a.set_xlabel("layers")
    a.set_ylabel(f"minutes per epoch of {args.epoch_images} images")
    a.set_xscale("log")
    a.set_yscale("log")
    b.plot(depths, memory, "o-", color="tab:red")
    b.set_xlabel("layers")
    b.set_ylabel("peak resident memory (GiB)")
    b.set_xscale("log")
    b.set_yscale("log")
    for ax, ys in ((a, minutes), (b, memory)):
        for d, y in zip(depths, ys):
            ax.annotate(f"{y:.3g}", (d, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])
        ax.grid(True, which="both", alpha=0.3)
    r = best[depths[0]]
    fig.suptitle(f"ResNet training on CPU, batch {r['batch']}, {r['threads']} threads: time and memory are linear in depth")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
