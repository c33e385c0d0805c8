#!/usr/bin/env python3
"""Draw one probe's results (written by `reslab analyze` or an experiment's "probes" section).

Usage: plot_probes.py PROBE.json [OUTPUT.png]

Plain nets are dashed, residual nets solid, one colour per depth. Trained runs and fresh nets ("_init" files)
are drawn the same way; the title says which. Subjects that are one model and configuration at several seeds
(the same source, model, depth, residual flag and config) are drawn as their mean with a band from min to max.
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


def seed_groups(subjects):
    """Lists of subjects that differ only in their seed, in the order of each list's first subject."""
    groups = {}
    for s in subjects:
        key = json.dumps([s.get(k) for k in ("source", "model", "depth", "residual", "config")], sort_keys=True)
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def several_seeds(subjects):
    return any(len(g) > 1 for g in seed_groups(subjects))


def lines(ax, subjects, xy, st, **kw):
    """One line per subject from xy(subject) -> (xs, ys); a group of seeds as its mean over the xs they all have,
    with a band from min to max."""
    for group in seed_groups(subjects):
        curves = [c for c in (xy(s) for s in group) if len(c[0])]
        if not curves:
            continue
        look = st(group[0])
        if len(curves) == 1:
            ax.plot(curves[0][0], curves[0][1], **look, **kw)
            continue
        tables = [dict(zip(xs, ys)) for xs, ys in curves]
        common = sorted(set.intersection(*(set(t) for t in tables)))
        at = [[t[x] for t in tables] for x in common]
        look["label"] += " (%d seeds)" % len(curves)
        ax.plot(common, [sum(v) / len(v) for v in at], **look, **kw)
        ax.fill_between(common, [min(v) for v in at], [max(v) for v in at], color=look["color"], alpha=0.2,
                        linewidth=0)


def by_layer(ax, subjects, key, st, ylabel, log=True, rows="layers", hidden_only=False):
    def xy(s):
        rs = s[rows][1:-1] if hidden_only else s[rows]
        ys = [r[key] for r in rs if r.get(key) is not None]
        return list(range(1 if hidden_only else 0, len(ys) + (1 if hidden_only else 0))), ys
    lines(ax, subjects, xy, st)
    ax.set_xlabel("layer index (forward order)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def during_training(ax, subjects, key, st, ylabel, reducer, log=True):
    def xy(s):
        recs = s.get("during_training") or []
        return ([r["iter"] for r in recs],
                [reducer([row[key] for row in r["layers"] if row.get(key) is not None]) for r in recs])
    drawn = any(s.get("during_training") for s in subjects)
    lines(ax, subjects, xy, st, marker="o")
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


def plot_refinement(subjects, st):
    res = [s for s in subjects if s.get("applies")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))

    def per_block(key):
        return lambda s: ([r["block"] for r in s["per_block"] if r[key] is not None],
                          [r[key] for r in s["per_block"] if r[key] is not None])
    lines(axes[0], res, per_block("cosine"), st, marker=".")
    axes[0].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set_title("cos(F_i(h_i), dL/dh_i) (dL/ds_i where the shape changes)")
    axes[0].set_ylabel("cosine, mean over test examples")
    lines(axes[1], res, per_block("relative_size"), st, marker=".")
    axes[1].set_title("||F_i(h_i)|| / ||h_i|| (/ ||s_i(h_i)|| where the shape changes)")
    axes[1].set_ylabel("relative size (log scale)")
    axes[1].set_yscale("log")
    lines(axes[2], res, lambda s: ([r["block"] for r in s["readout"]], [r["loss"] for r in s["readout"]]), st,
          marker="o")
    axes[2].set_title("Head applied to each block of the last stage")
    axes[2].set_ylabel("test loss")
    for ax in axes:
        ax.set_xlabel("block")
        ax.grid(alpha=0.3)
    skipped = [st(s)["label"] for s in subjects if not s.get("applies")]
    if skipped:
        axes[0].text(0.01, 0.01, "does not apply to: " + ", ".join(sorted(set(skipped))), fontsize=7,
                     transform=axes[0].transAxes)
    return fig


def plot(doc, out):
    probe, subjects = doc["probe"], doc["subjects"]
    st = style(subjects)
    when = "at initialisation" if any(s["source"] == "init" for s in subjects) else "trained"
    has_training = any(s.get("during_training") for s in subjects)
    if probe == "responses":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        by_layer(axes[0], subjects, "std", st, "std of the response (log scale)")
        axes[0].set_title("Layer responses (after BN, before addition/ReLU), layer order")
        lines(axes[1], subjects, lambda s: (list(range(len(s["std_sorted"]))), s["std_sorted"]), st)
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
        lines(axes[0], subjects, lambda s: (s["lags"], s["cosine"]), st)
        axes[0].set_xlabel("lag (points along the line; step %.3g in input space)" % subjects[0]["step"])
        axes[0].set_ylabel("mean cosine of input gradients")
        axes[0].set_title("Gradient correlation along lines between test images")
        axes[0].grid(alpha=0.3)
        for residual, name in ((False, "plain"), (True, "residual")):
            by_depth = {}
            for s in subjects:
                if s["residual"] == residual:
                    by_depth.setdefault(s["depth"], []).append(s["cosine"][0])
            depths = sorted(by_depth)
            if depths:
                line, = axes[1].plot(depths, [sum(by_depth[d]) / len(by_depth[d]) for d in depths], marker="o",
                                     linestyle="-" if residual else "--", label=name)
                if any(len(v) > 1 for v in by_depth.values()):
                    axes[1].fill_between(depths, [min(by_depth[d]) for d in depths],
                                         [max(by_depth[d]) for d in depths], color=line.get_color(), alpha=0.2)
        axes[1].set_xlabel("depth")
        axes[1].set_ylabel("cosine at lag 1")
        axes[1].set_title("Shattering with depth (Balduzzi et al. 2017)")
        axes[1].grid(alpha=0.3)
    elif probe == "lesions":
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        lines(axes[0], subjects, lambda s: ([r["block"] for r in s["single"] if r["error"] is not None],
                                            [r["error"] for r in s["single"] if r["error"] is not None]),
              st, marker=".")
        for group in seed_groups(subjects):
            axes[0].axhline(sum(s["baseline_error"] for s in group) / len(group), color=st(group[0])["color"],
                            linewidth=0.8, linestyle=":")
            if len(group) == 1:
                s = group[0]
                axes[1].errorbar([0] + [r["k"] for r in s["random"]],
                                 [s["baseline_error"]] + [r["mean"] for r in s["random"]],
                                 yerr=[0] + [r["std"] for r in s["random"]], capsize=3, **st(s))
        lines(axes[1], [s for g in seed_groups(subjects) if len(g) > 1 for s in g],
              lambda s: ([0] + [r["k"] for r in s["random"]], [s["baseline_error"]] + [r["mean"] for r in s["random"]]),
              st)
        axes[0].set_xlabel("block deleted")
        axes[0].set_ylabel("test error (%)")
        axes[0].set_title("Deleting one block (dotted: nothing deleted)")
        axes[1].set_xlabel("blocks deleted at random")
        axes[1].set_ylabel("test error (%), mean of the draws (bars: their std)")
        axes[1].set_title("Deleting several blocks (Veit et al. 2016)")
        for ax in axes:
            ax.grid(alpha=0.3)
    elif probe == "paths":
        res = [s for s in subjects if s.get("applicable")]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        lines(axes[0], res, lambda s: (list(range(len(s["distribution"]))), s["distribution"]), st)
        lines(axes[1], res, lambda s: ([r["length"] for r in s["lengths"]], [r["grad_norm"] for r in s["lengths"]]),
              st, marker=".")
        lines(axes[2], res, lambda s: (list(range(len(s["gradient_share"]))), s["gradient_share"]), st)
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
    elif probe == "refinement":
        fig = plot_refinement(subjects, st)
    else:
        raise SystemExit("plot_probes.py: unknown probe '%s'" % probe)
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(8, max(1, len(labels))), fontsize=8)
    bands = "; lines over seeds: mean, band min to max" if several_seeds(subjects) else ""
    fig.suptitle("%s, %s%s" % (probe, when, bands))
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
