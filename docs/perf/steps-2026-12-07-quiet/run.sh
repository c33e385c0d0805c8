#!/usr/bin/env bash
# Side by side, one sitting, nothing else training on the machine (the fig6 campaign had ended): the ceiling, then
# auto (fresh cache: measured) and direct, three alternations. The ceiling target: the resnet56 step under auto
# against the best direct-convolution rate of the same alternation.
cd "$(git rev-parse --show-toplevel)"
out=${1:-docs/perf/steps-2026-12-07-quiet}; mkdir -p $out   # a second sitting: its own folder as $1
export RESLAB_CACHE_DIR=$out/cache
for r in 1 2 3; do
  build/apps/reslab bench --ceiling --batch 128 --iterations 10 --json > $out/ceiling-$r.json 2>$out/ceiling-$r.err
  for p in auto direct; do
    RESLAB_CONV=$p build/apps/reslab bench --model resnet20,resnet56 --batch 128 --iterations 20 --json > $out/$p-$r.json 2>$out/$p-$r.err
  done
done
