#!/usr/bin/env bash
# Three alternations of the fixed policies, step and eval throughput, campaign paused.
cd "$(git rev-parse --show-toplevel)"
out=docs/perf/steps-2026-12-07-mixed/fixed; mkdir -p $out
for r in 1 2 3; do
  for p in winograd2x2 winograd-mixed direct; do
    RESLAB_CONV=$p build/apps/reslab bench --model resnet20,resnet56 --batch 128 --iterations 20 --json > $out/$p-$r.json 2>$out/$p-$r.err
  done
done
