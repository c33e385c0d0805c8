#!/usr/bin/env python3
"""Draw an experiment's curves in the style of the paper's Figure 6.

Usage: plot_curves.py RESULTS_DIR [OUTPUT.png]

Reads RESULTS_DIR/results.json and each run's RESULTS_DIR/<run>/metrics.jsonl. Plain nets are drawn on the
left, residual nets on the right, one colour per depth: training error thin and dashed, test error bold.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a torn last line from an interrupted run
    return records


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results_dir = argv[1]
    output = argv[2] if len(argv) > 2 else os.path.join(results_dir, "curves.png")
    results_path = os.path.join(results_dir, "results.json")
    try:
        with open(results_path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {results_path}: {e}", file=sys.stderr)
        return 2

    runs = results.get("runs", [])
    if not runs:
        print(f"error: {results_path}: no runs to plot", file=sys.stderr)
        return 2
    def variant(run):
        # what the name adds after the depth: "-k1" for resnet20-k1, "-B-s2" for a shortcut and seed grid
        name = run.get("run", run["model"])
        digits = next((i for i, ch in enumerate(name) if ch.isdigit()), len(name))
        while digits < len(name) and name[digits].isdigit():
            digits += 1
        return name[digits:]

    keys = sorted({(r["depth"], variant(r)) for r in runs})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colour = {k: cmap(i % cmap.N) for i, k in enumerate(keys)}
    max_iter = max(r.get("iterations", 0) for r in runs) or 1
    scale, unit = (1e4, "iter. (1e4)") if max_iter >= 2e4 else (1.0, "iterations")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = {False: axes[0], True: axes[1]}
    top = 0.0
    diverged = {False: 0, True: 0}  # annotations so far per panel, stacked up from the bottom
    for run in sorted(runs, key=lambda r: (r["residual"], r["depth"], r.get("run", ""))):
        path = os.path.join(results_dir, run.get("run", run["model"]), "metrics.jsonl")
        if not os.path.exists(path):
            print(f"warning: {path}: missing, run skipped", file=sys.stderr)
            continue
        records = read_metrics(path)
        ax = panels[bool(run["residual"])]
        c = colour[(run["depth"], variant(run))]
        label = f"{'ResNet' if run['residual'] else 'plain'}-{run['depth']}{variant(run)}"
        train = [(r["iter"] / scale, r["error"]) for r in records if r.get("kind") == "train"]
        test = [(r["iter"] / scale, r["error"]) for r in records if r.get("kind") == "eval" and r.get("split") == "test"]
        if train:
            ax.plot(*zip(*train), linestyle="--", linewidth=0.8, color=c, alpha=0.9)
            top = max(top, max(e for _, e in train[len(train) // 4:] or train))
        if test:
            ax.plot(*zip(*test), linestyle="-", linewidth=2.2, color=c, marker="o", markersize=3, label=label)
            top = max(top, max(e for _, e in test))
        elif train:
            ax.plot([], [], color=c, linewidth=2.2, label=label)
        if run.get("status") == "diverged":
            k = diverged[bool(run["residual"])]
            diverged[bool(run["residual"])] += 1
            ax.annotate(f"{label} diverged at iteration {run.get('diverged_at', '?')}", xy=(0.02, 0.04 + 0.06 * k),
                        xycoords="axes fraction", color=c, fontsize=9)

    dataset = runs[0].get("dataset", "")
    for residual, ax in panels.items():
        ax.set_title(f"{'residual' if residual else 'plain'} nets ({dataset})")
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
        entries = len(ax.get_legend_handles_labels()[0])
        if entries > 6:  # many variants: below the panel, where it hides no curve
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
        elif entries:
            ax.legend(loc="upper right", fontsize=9)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100, top * 1.15 + 1))
    fig.suptitle(f"{results.get('experiment', '')}: dashed = training error, bold = test error", fontsize=10)
    fig.tight_layout()
    tmp = output + ".tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
