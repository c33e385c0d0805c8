#!/usr/bin/env bash
# Side by side, one sitting, campaign paused: the ceiling, then auto (fresh cache: measured), F(2x2) everywhere
# and direct, three alternations; then each shape's candidates timed in the step.
cd "$(git rev-parse --show-toplevel)"
out=docs/perf/steps-2026-12-07-mixed/auto; mkdir -p $out
export RESLAB_CACHE_DIR=$out/cache
for r in 1 2 3; do
  build/apps/reslab bench --ceiling --batch 128 --iterations 10 --json > $out/ceiling-$r.json 2>$out/ceiling-$r.err
  for p in auto winograd2x2 direct; do
    RESLAB_CONV=$p build/apps/reslab bench --model resnet20,resnet56 --batch 128 --iterations 20 --json > $out/$p-$r.json 2>$out/$p-$r.err
  done
done
build/apps/reslab bench --model resnet20,resnet56 --batch 128 --iterations 2 --warmup 1 --in-step 7 --json > $out/in-step.json 2>$out/in-step.err
