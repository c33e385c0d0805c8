#!/bin/bash
# The same floats with and without the change: the two binaries of run.sh train resnet20 (40 iterations) and
# plain20 (20) at fixed seeds; the weights and the metrics (timing fields aside) must be byte-identical, as must
# `bench --export-check`'s files (weights, a batch, the losses before and after two SGD steps and in eval mode).
set -u
w=$(mktemp -d)
for b in base inplace; do
  /tmp/reslab-$b train --model resnet20 --out $w/$b-r20 --iterations 40 --train-size 2048 --test-size 512 \
    --batch 64 --log-every 5 --seed 3 >/dev/null 2>&1 || echo "$b resnet20 failed"
  /tmp/reslab-$b train --model plain20 --out $w/$b-p20 --iterations 20 --train-size 1024 --test-size 256 \
    --batch 32 --log-every 5 --seed 4 >/dev/null 2>&1 || echo "$b plain20 failed"
  /tmp/reslab-$b bench --model resnet20 --batch 16 --export-check $w/$b-check.pt >/dev/null 2>&1
done
strip() { python3 -c 'import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print(json.dumps({k: v for k, v in d.items() if k not in ("img_per_s", "seconds", "wall_seconds")}, sort_keys=True))' "$1"; }
for run in r20 p20; do
  cmp -s $w/base-$run/model.pt $w/inplace-$run/model.pt && echo "$run: model.pt byte-identical" || echo "$run: model.pt DIFFERS"
  cmp -s <(strip $w/base-$run/metrics.jsonl) <(strip $w/inplace-$run/metrics.jsonl) &&
    echo "$run: metrics identical ($(wc -l <$w/base-$run/metrics.jsonl) records)" || echo "$run: metrics DIFFER"
done
cmp -s $w/base-check.pt $w/inplace-check.pt && echo "export-check: byte-identical" || echo "export-check: DIFFERS"
rm -rf "$w"
