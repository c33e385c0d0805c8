"""BN scales (gamma) of the trained why_residual nets, per model over seeds: the mean over BN layers of each
layer's mean |gamma|, and the smallest and largest of those layer means. Reads RUNS/<model>-s<seed>/model.pt
(not committed: run `reslab run experiments/why_residual.json --seeds 1,2,3` first). Needs python3-torch.
Usage: python3 gammas.py RUNS_DIR"""
import statistics
import sys

import torch

runs = sys.argv[1] if len(sys.argv) > 1 else "runs/why_residual"
for model in ("plain20", "resnet20", "plain56", "resnet56"):
    means, lows, highs = [], [], []
    for seed in (1, 2, 3):
        net = torch.jit.load(f"{runs}/{model}-s{seed}/model.pt")
        layer = [p.detach().abs().mean().item() for n, p in net.named_parameters()
                 if n.endswith(".weight") and "bn" in n.split(".")[-2]]
        means.append(statistics.mean(layer))
        lows.append(min(layer))
        highs.append(max(layer))
    print(f"{model}: mean |gamma| {statistics.mean(means):.3f} ± {statistics.stdev(means):.3f} (3 seeds), "
          f"layer means from {min(lows):.3f} to {max(highs):.3f}")
