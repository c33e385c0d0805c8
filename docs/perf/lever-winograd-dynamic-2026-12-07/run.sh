#!/bin/bash
# A/B, one sitting (2026-12-07, 2-core AVX2 EPYC): base = build/apps/reslab of main at 3f69229, copied to
# /tmp/reslab_base; new = the same with ../experiment-winograd-dynamic.patch applied. Alternating processes,
# one kernel cache (so one plan for both). The JSON beside this file is what it wrote (ab-X-N.json as X-N.json).
export RESLAB_CACHE_DIR=/tmp/ab-cache
for i in 1 2 3; do
  for b in base new; do
    bin=/tmp/reslab_base; [[ $b == new ]] && bin=/work/main/build/apps/reslab
    $bin bench --model resnet56 --iterations 15 --warmup 3 --json > /tmp/ab-$b-$i.json 2>/dev/null
    python3 -c "import json; d=json.load(open('/tmp/ab-$b-$i.json')); print('$b', $i, round(d['train_img_per_s'],1), round(d['eval_img_per_s'],1))" 
  done
done
