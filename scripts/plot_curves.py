#!/usr/bin/env python3
"""Draw an experiment's curves in the style of the paper's Figure 6.

Usage: plot_curves.py RESULTS_DIR [OUTPUT.png]

Reads RESULTS_DIR/results.json and each run's RESULTS_DIR/<run>/metrics.jsonl and config.json. Plain nets are
drawn on the left, residual nets on the right, one colour per depth: training error thin and dashed, test error
bold. Runs of one configuration at several seeds are drawn as their mean, with a band from the min to the max.
Where results.json has a depth_trend (a family at three depths or more), OUTPUT-depth.png draws final error
against depth, seed by seed, with each side's slope.
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
        # what the name adds after the depth, seed aside: "-k1" for resnet20-k1, "-B" for a shortcut grid
        name = run.get("run", run["model"])
        digits = next((i for i, ch in enumerate(name) if ch.isdigit()), len(name))
        while digits < len(name) and name[digits].isdigit():
            digits += 1
        rest = name[digits:]
        seed = f"-s{run.get('seed')}"
        return rest[: -len(seed)] if run.get("seed") is not None and rest.endswith(seed) else rest

    def configuration(run):
        # the run's resolved configuration minus its seed, names and where it ran: the repeats of one
        # configuration over seeds share it (the model's plain/residual family is the panel)
        path = os.path.join(results_dir, run.get("run", run["model"]), "config.json")
        try:
            with open(path) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError):
            return json.dumps([run["model"], variant(run)])
        for key in ("experiment", "name", "seed", "threads", "device"):
            config.pop(key, None)
        return json.dumps(config, sort_keys=True)

    def records_of(run):
        path = os.path.join(results_dir, run.get("run", run["model"]), "metrics.jsonl")
        if not os.path.exists(path):
            print(f"warning: {path}: missing, run skipped", file=sys.stderr)
            return None
        return read_metrics(path)

    def band(curves):
        # mean over seeds at the iterations every seed recorded, with the min and max
        common = set.intersection(*(set(x for x, _ in c) for c in curves))
        xs = sorted(common)
        values = [[dict(c)[x] for c in curves] for x in xs]
        return xs, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]

    groups = {}
    for run in runs:
        groups.setdefault((bool(run["residual"]), configuration(run)), []).append(run)
    keys = sorted({(r["depth"], variant(r)) for r in runs})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colour = {k: cmap(i % cmap.N) for i, k in enumerate(keys)}
    max_iter = max(r.get("iterations", 0) for r in runs) or 1
    scale, unit = (1e4, "iter. (1e4)") if max_iter >= 2e4 else (1.0, "iterations")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = {False: axes[0], True: axes[1]}
    top = 0.0
    diverged = {False: 0, True: 0}  # annotations so far per panel, stacked up from the bottom
    several = False
    order = sorted(groups.items(), key=lambda g: (g[0][0], g[1][0]["depth"], variant(g[1][0])))
    for (residual, _), members in order:
        first = members[0]
        ax = panels[residual]
        c = colour[(first["depth"], variant(first))]
        label = f"{'ResNet' if residual else 'plain'}-{first['depth']}{variant(first)}"
        trains, tests = [], []
        for run in members:
            records = records_of(run)
            if records is None:
                continue
            train = [(r["iter"] / scale, r["error"]) for r in records if r.get("kind") == "train"]
            test = [(r["iter"] / scale, r["error"]) for r in records
                    if r.get("kind") == "eval" and r.get("split") == "test"]
            if train:
                trains.append(train)
            if test:
                tests.append(test)
        n = len(trains)
        if n > 1:
            label += f" (mean of {n} seeds)"
            several = True
        if trains:
            xs, mean, lo, hi = band(trains)
            if xs:
                ax.plot(xs, mean, linestyle="--", linewidth=0.8, color=c, alpha=0.9)
                if n > 1:
                    ax.fill_between(xs, lo, hi, color=c, alpha=0.12, linewidth=0)
                tail = mean[len(mean) // 4:] or mean
                top = max(top, max(tail))
        if tests:
            xs, mean, lo, hi = band(tests)
            if xs:
                ax.plot(xs, mean, linestyle="-", linewidth=2.2, color=c, marker="o", markersize=3, label=label)
                if len(tests) > 1:
                    ax.fill_between(xs, lo, hi, color=c, alpha=0.2, linewidth=0)
                top = max(top, max(hi))
        elif trains:
            ax.plot([], [], color=c, linewidth=2.2, label=label)
        for run in members:
            if run.get("status") == "diverged":
                k = diverged[residual]
                diverged[residual] += 1
                ax.annotate(f"{run.get('run', label)} diverged at iteration {run.get('diverged_at', '?')}",
                            xy=(0.02, 0.04 + 0.06 * k), xycoords="axes fraction", color=c, fontsize=9)

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
    bands = "; bands: min to max over seeds" if several else ""
    fig.suptitle(f"{results.get('experiment', '')}: dashed = training error, bold = test error{bands}", fontsize=10)
    fig.tight_layout()
    tmp = output + ".tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, output)
    plt.close(fig)
    if results.get("depth_trend"):
        root, ext = os.path.splitext(output)
        plot_depth(results, root + "-depth" + (ext or ".png"))
    return 0


def plot_depth(results, output):
    """Figure 6's ordering as one figure: final error against depth for every family with three depths or more
    (results.json's depth_trend), each seed a dot, the mean a line with a bar of one sd, and each side's slope per
    10 layers with its 95% interval in the legend. Training error on the left, test error on the right."""
    def fmt(d):
        if not isinstance(d, dict) or d.get("mean") is None:
            return "no complete seed"
        ci = d.get("ci95")
        interval = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and None not in ci else ""
        return f"{d['mean']:+.2f}{interval}/10 layers (n={d.get('n')})"

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = 0
    for trend in results["depth_trend"]:
        variant = trend.get("variant", "")
        rows = [r for r in results.get("degradation", []) if r.get("variant", "") == variant]
        for side in ("plain", "residual"):
            if side not in trend:
                continue
            colour = palette[k % len(palette)]
            k += 1
            name = ("ResNet" if side == "residual" else "plain") + variant
            for ax, key in zip(axes, ("train_error", "test_error")):
                depths, means, sds = [], [], []
                for row in sorted(rows, key=lambda r: r["depth"]):
                    if side not in row or row["depth"] not in trend[side]["depths"]:
                        continue
                    values = [e[key] for e in row[side].get("per_seed", []) if isinstance(e.get(key), (int, float))]
                    if not values:
                        continue
                    ax.scatter([row["depth"]] * len(values), values, s=12, color=colour, alpha=0.5, linewidths=0)
                    depths.append(row["depth"])
                    means.append(row[side].get(key))
                    sds.append(row[side].get(key + "_sd") or 0.0)
                if depths:
                    ax.errorbar(depths, means, yerr=sds, color=colour, marker="o", markersize=4, linewidth=2,
                                capsize=3, label=f"{name}: {fmt(trend[side].get(key))}")
    shown = sorted({d for trend in results["depth_trend"] for d in trend.get("depths", [])})
    for ax, title in zip(axes, ("final training error", "test error")):
        ax.set_xticks(shown)
        ax.set_title(title)
        ax.set_xlabel("layers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("error (%)")
    fig.suptitle(f"{results.get('experiment', '')}: error against depth; dots: seeds, bars: mean ± sd; "
                 "legend: least-squares slope per seed, mean [95% CI]", fontsize=10)
    fig.tight_layout()
    tmp = output + ".tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, output)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
