#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"
out=docs/perf/ceiling-2026-12-07-builds; mkdir -p $out
export RESLAB_CACHE_DIR=$out/cache
for r in 1 2; do
  build/apps/reslab bench --ceiling --batch 128 --iterations 10 --json > $out/debian-$r.json 2>&1
  build-cuda/apps/reslab bench --ceiling --batch 128 --iterations 10 --json > $out/cuda-$r.json 2>&1
done
