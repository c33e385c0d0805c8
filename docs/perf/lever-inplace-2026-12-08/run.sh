#!/bin/bash
# A/B in one sitting: base = build/apps/reslab of main at ea73764 (ReLUs and residual additions out of place),
# copied to /tmp/reslab-base; new = the same with them in place where no probe watches, copied to
# /tmp/reslab-inplace. Alternating processes (base first in odd rounds, new first in even ones), one kernel cache
# (one plan for both). Writes X-MODEL-N.json into the folder given (default: this script's folder).
out=${1:-$(dirname "$0")}
export RESLAB_CACHE_DIR=/tmp/ab-cache
for i in 1 2 3 4; do
  order="base new"; (( i % 2 == 0 )) && order="new base"
  for model in resnet56 resnet20; do
    for b in $order; do
      bin=/tmp/reslab-base; [[ $b == new ]] && bin=/tmp/reslab-inplace
      $bin bench --model $model --iterations 15 --warmup 3 --epoch --train-size 8192 --json \
        >"$out/$b-$model-$i.json" 2>/dev/null
      python3 -c "import json; d=json.load(open('$out/$b-$model-$i.json')); print('$b $model $i', *(round(d[k], 1) for k in ('train_img_per_s', 'epoch_img_per_s', 'eval_img_per_s', 'peak_rss_mb')))"
    done
  done
done
