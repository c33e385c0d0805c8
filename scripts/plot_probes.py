#!/usr/bin/env python3
"""Draw one probe's results (written by `reslab analyze` or an experiment's "probes" section).

Usage: plot_probes.py PROBE.json [OUTPUT.png]

Plain nets are dashed, residual nets solid, one colour per depth. Trained runs and fresh nets ("_init" files)
are drawn the same way; the title says which.
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def style(subjects):
    depths = sorted({s["depth"] for s in subjects})
    cmap = plt.get_cmap("viridis")
    colour = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}

    def of(s):
        return dict(color=colour[s["depth"]], linestyle="-" if s["residual"] else "--",
                    label=("ResNet-" if s["residual"] else "plain-") + str(s["depth"]))
    return of


def by_layer(ax, subjects, key, st, ylabel, log=True, rows="layers", hidden_only=False):
    for s in subjects:
        rs = s[rows][1:-1] if hidden_only else s[rows]
        ys = [r[key] for r in rs if r.get(key) is not None]
        ax.plot(range(1 if hidden_only else 0, len(ys) + (1 if hidden_only else 0)), ys, **st(s))
    ax.set_xlabel("layer index (forward order)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def during_training(ax, subjects, key, st, ylabel, reducer, log=True):
    drawn = False
    for s in subjects:
        recs = s.get("during_training") or []
        if not recs:
            continue
        xs = [r["iter"] for r in recs]
        ys = [reducer([row[key] for row in r["layers"] if row.get(key) is not None]) for r in recs]
        ax.plot(xs, ys, marker="o", **st(s))
        drawn = True
    ax.set_xlabel("iterations done")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return drawn


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def bottom_over_top(v):
    # the gradient reaching the first block's input over the one reaching the last block's input (for basic
    # blocks, layers 1 and 2n - 1): below 1 it shrinks on its way down (vanishes), far above 1 it grows (explodes)
    return v[1] / v[-3] if len(v) > 4 and v[-3] else float("nan")


def debiased_snr(rows, n):
    # |mean|^2 loses the dev^2/(n-1) that noise adds to it; dev^2 gains the factor n/(n-1). Recomputed from
    # the stored norms so that records written by any version read the same.
    out = []
    for r in rows:
        m, d = r["mean_norm"], r["rms_deviation"]
        if d <= 0 or n < 2:
            out.append(dict(r, snr_debiased=float("nan")))
            continue
        mu2 = max(0.0, m * m - d * d / (n - 1))
        out.append(dict(r, snr_debiased=math.sqrt(mu2) / (d * math.sqrt(n / (n - 1)))))
    return out


def with_debiased_snr(subjects):
    for s in subjects:
        s["layers"] = debiased_snr(s["layers"], s["examples"])
        for rec in s.get("during_training") or []:
            rec["layers"] = debiased_snr(rec["layers"], rec["examples"])


def plot(doc, out):
    probe, subjects = doc["probe"], doc["subjects"]
    st = style(subjects)
    when = "at initialisation" if any(s["source"] == "init" for s in subjects) else "trained"
    has_training = any(s.get("during_training") for s in subjects)
    if probe == "responses":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        by_layer(axes[0], subjects, "std", st, "std of the response (log scale)")
        axes[0].set_title("Layer responses (after BN, before addition/ReLU), layer order")
        for s in subjects:
            axes[1].plot(range(len(s["std_sorted"])), s["std_sorted"], **st(s))
        axes[1].set_xlabel("layer index (sorted by magnitude)")
        axes[1].set_ylabel("std (log scale)")
        axes[1].set_yscale("log")
        axes[1].set_title("sorted by magnitude (the paper's Figure 7, bottom)")
        axes[1].grid(alpha=0.3)
    elif probe in ("grad_norms", "grad_snr"):
        rows = 2 if has_training else 1
        fig, axes = plt.subplots(rows, 2, figsize=(12, 4.5 * rows), squeeze=False)
        if probe == "grad_norms":
            by_layer(axes[0][0], subjects, "weight_grad_norm", st, "||dL/dW||")
            axes[0][0].set_title("Weight-gradient norm per layer")
            by_layer(axes[0][1], subjects, "input_grad_norm", st, "||dL/dx|| (layer input)", hidden_only=True)
            axes[0][1].set_title("Norm of the gradient reaching each conv's input (hidden layers)")
            if has_training:
                during_training(axes[1][0], subjects, "weight_grad_norm", st, "median over layers of ||dL/dW||",
                                median)
                axes[1][0].set_title("During training: median weight-gradient norm")
                during_training(axes[1][1], subjects, "input_grad_norm", st,
                                "||dL/dx|| first block input / last block input", bottom_over_top)
                axes[1][1].set_title("During training: gradient at the bottom over the top")
        else:
            with_debiased_snr(subjects)
            by_layer(axes[0][0], subjects, "snr_debiased", st, "debiased ||E g|| / rms(g - E g)", log=False)
            axes[0][0].set_title("Per-example gradient signal-to-noise per layer (%d examples)"
                                 % subjects[0]["examples"])
            by_layer(axes[0][1], subjects, "mean_norm", st, "||mean per-example gradient||")
            axes[0][1].set_title("Norm of the mean gradient per layer")
            if has_training:
                during_training(axes[1][0], subjects, "snr_debiased", st, "median debiased SNR over layers",
                                median, log=False)
                axes[1][0].set_title("During training: median gradient SNR (batch of the step)")
                during_training(axes[1][1], subjects, "mean_norm", st, "median ||mean gradient|| over layers",
                                median)
                axes[1][1].set_title("During training: median norm of the mean gradient")
    elif probe == "shattered":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for s in subjects:
            axes[0].plot(s["lags"], s["cosine"], **st(s))
        axes[0].set_xlabel("lag (points along the line; step %.3g in input space)" % subjects[0]["step"])
        axes[0].set_ylabel("mean cosine of input gradients")
        axes[0].set_title("Gradient correlation along lines between test images")
        axes[0].grid(alpha=0.3)
        for residual, name in ((False, "plain"), (True, "residual")):
            pts = sorted((s["depth"], s["cosine"][0]) for s in subjects if s["residual"] == residual)
            if pts:
                axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                             linestyle="-" if residual else "--", label=name)
        axes[1].set_xlabel("depth")
        axes[1].set_ylabel("cosine at lag 1")
        axes[1].set_title("Shattering with depth (Balduzzi et al. 2017)")
        axes[1].grid(alpha=0.3)
    elif probe == "lesions":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for s in subjects:
            xs = [r["block"] for r in s["single"] if r["error"] is not None]
            ys = [r["error"] for r in s["single"] if r["error"] is not None]
            line, = axes[0].plot(xs, ys, marker=".", **st(s))
            axes[0].axhline(s["baseline_error"], color=line.get_color(), linewidth=0.8, linestyle=":")
            ks = [0] + [r["k"] for r in s["random"]]
            means = [s["baseline_error"]] + [r["mean"] for r in s["random"]]
            sds = [0] + [r["std"] for r in s["random"]]
            axes[1].errorbar(ks, means, yerr=sds, capsize=3, **st(s))
        axes[0].set_xlabel("block deleted")
        axes[0].set_ylabel("test error (%)")
        axes[0].set_title("Deleting one block (dotted: nothing deleted)")
        axes[1].set_xlabel("blocks deleted at random")
        axes[1].set_ylabel("test error (%), mean and std")
        axes[1].set_title("Deleting several blocks (Veit et al. 2016)")
        for ax in axes:
            ax.grid(alpha=0.3)
    elif probe == "paths":
        res = [s for s in subjects if s.get("applicable")]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for s in res:
            axes[0].plot(range(len(s["distribution"])), s["distribution"], **st(s))
            ls = s["lengths"]
            axes[1].plot([r["length"] for r in ls], [r["grad_norm"] for r in ls], marker=".", **st(s))
            axes[2].plot(range(len(s["gradient_share"])), s["gradient_share"], **st(s))
        for s in subjects:
            if not s.get("applicable"):
                axes[1].scatter([s["depth"] // 2 - 1], [s["input_grad_norm"]], marker="x", s=60,
                                color=st(s)["color"], label=st(s)["label"] + " (its one path)")
        axes[0].set_title("Paths of each length (binomial)")
        axes[0].set_ylabel("fraction of paths")
        axes[1].set_title("Input-gradient norm through one path")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("||dL/dx|| per example")
        axes[2].set_title("Share of the total gradient by path length")
        axes[2].set_ylabel("share")
        for ax in axes:
            ax.set_xlabel("path length (residual branches taken)")
            ax.grid(alpha=0.3)
    else:
        raise SystemExit("plot_probes.py: unknown probe '%s'" % probe)
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(8, max(1, len(labels))), fontsize=8)
    fig.suptitle("%s, %s" % (probe, when))
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(out, dpi=110)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    out = argv[2] if len(argv) > 2 else os.path.splitext(path)[0] + ".png"
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("plot_probes.py: %s: %s" % (path, e), file=sys.stderr)
        return 1
    if not doc.get("subjects"):
        print("plot_probes.py: %s: no subjects to plot" % path, file=sys.stderr)
        return 1
    plot(doc, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
