#!/usr/bin/env bash
# The reslab program as a user runs it: exit codes, error messages, files, and the plot.
# Usage: test_cli.sh path/to/reslab
set -uo pipefail
reslab=$1
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESLAB_CACHE_DIR="$work/kernel-cache"  # the kernel timings of these runs (train/kernels.h)
source "$(dirname "$0")/check.sh"

check "models lists names" 0 "resnet1202" -- "$reslab" models
check "info counts resnet56" 0 '"params": 853018' -- "$reslab" info resnet56 --json
check "info on fashion input" 0 "1x28x28" -- "$reslab" info plain20 --dataset fashion-mnist
check "invalid depth" nonzero "depth 21 is not 6n\+2" -- "$reslab" info resnet21
check "unknown model" nonzero "unknown model 'vgg16'" -- "$reslab" info vgg16
check "unknown dataset" nonzero "unknown dataset 'imagenet'" -- "$reslab" info resnet20 --dataset imagenet
check "info imagenet" 0 '"params": 25557032' -- "$reslab" info resnet50 --input 3x224x224 --classes 1000 --shortcut B --json
check "info bad input" nonzero "--input '3x224' is not CxHxW" -- "$reslab" info resnet50 --input 3x224
check "models lists tags" 0 "-skipinit" -- "$reslab" models
check "bad tag" nonzero "unknown tag '-wide'" -- "$reslab" info resnet20-wide
check "bad shortcut" nonzero "shortcut 'Z'" -- "$reslab" info resnet20 --shortcut Z

# A bad experiment file: the error names the file and the key.
cat >"$work/bad.json" <<'JSON'
{"name": "bad", "grid": {"depth": [8]}, "optim": {"epochs": 1, "momentun": 0.9}}
JSON
check "unknown key" nonzero "bad.json: key 'optim.momentun' is not a known key" -- "$reslab" run "$work/bad.json" --out "$work/bad"
check "set unknown key" nonzero "bad.json --set optim.momentum=0.8 --set optim.lrr=1: key 'optim.lrr' is not a known key" -- \
  "$reslab" run "$work/bad.json" --out "$work/bad" --set optim.momentum=0.8 --set optim.lrr=1
check "set not key=value" nonzero "expected KEY=VALUE" -- "$reslab" train --model resnet8 --out "$work/t3" --set optim.lr
check "set out of range" nonzero "optim.momentum.*expected in \[0, 1\)" -- \
  "$reslab" train --model resnet8 --out "$work/t3" --set optim.momentum=1.5
check "train with set" 0 "resnet8: completed after 3 iterations" -- "$reslab" train --model resnet8 --out "$work/t4" \
  --threads 2 --set optim.iterations=3 --set data.train_size=256 --set data.test_size=100 --set optim.lr=0.05 \
  --set train.eval_batch=50
check "set in config.json" 0 '"lr": 0.05' -- cat "$work/t4/config.json"
# bf16 autocast: the same run in bfloat16's arithmetic, recorded as such; close to the float32 run, not it.
check "train bf16" 0 "resnet8: completed after 3 iterations" -- "$reslab" train --model resnet8 --out "$work/t4b" \
  --threads 2 --set optim.iterations=3 --set data.train_size=256 --set data.test_size=100 --set optim.lr=0.05 \
  --set train.eval_batch=50 --set train.precision=bf16
check "bf16 in config.json" 0 '"precision": "bf16"' -- cat "$work/t4b/config.json"
check "bf16 convolutions in summary" 0 '"conv": "direct \(bf16 autocast\)"' -- cat "$work/t4b/summary.json"
check "bf16 kernels.json" 0 '"source": "autocast"' -- cat "$work/t4b/kernels.json"
check "bf16 close to float32, not equal" 0 "^close$" -- /usr/bin/python3 -c "
import json
loss = lambda p: [json.loads(l)['loss'] for l in open(p) if json.loads(l)['kind'] == 'train']
a, b = loss('$work/t4/metrics.jsonl'), loss('$work/t4b/metrics.jsonl')
print('close' if len(a) == len(b) > 0 and a != b and all(abs(x - y) < 0.05 * x for x, y in zip(a, b)) else (a, b))"
check "bench bf16" 0 '"precision": "bf16"' -- "$reslab" bench --model resnet8 --batch 16 --iterations 1 --warmup 0 \
  --precision bf16 --json
check "bench bad precision" nonzero "precision 'half': expected float32 or bf16" -- "$reslab" bench --precision half
check "bench bf16 not with ceiling" nonzero "not with --in-step, --loader, --ceiling" -- "$reslab" bench --ceiling \
  --precision bf16
# CUDA graphs: a GPU's, refused on the CPU with nothing written.
check "cuda graphs on the CPU" nonzero "train.cuda_graphs = true; expected false on the CPU" -- "$reslab" train \
  --model resnet8 --out "$work/t4g" --set optim.iterations=3 --set data.train_size=256 --set train.cuda_graphs=true
check "cuda graphs: nothing written" nonzero "^$" -- test -e "$work/t4g"
check "bench cuda graphs on the CPU" nonzero "bench --cuda-graphs replays a model's step and evaluation on a CUDA" \
  -- "$reslab" bench --model resnet8 --cuda-graphs --iterations 1
check "set eval_batch" 0 '"eval_batch": 50' -- cat "$work/t4/config.json"
echo '{"name": "broken", ' >"$work/broken.json"
check "broken json" nonzero "broken.json: not valid JSON" -- "$reslab" run "$work/broken.json"
check "missing file" nonzero "nope.json" -- "$reslab" run "$work/nope.json"
check "missing data" nonzero "/nonexistent/train-images-idx3-ubyte" -- \
  "$reslab" train --model resnet8 --out "$work/t0" --data /nonexistent --iterations 2
check "epochs xor iterations" nonzero "excludes" -- "$reslab" train --model resnet8 --out "$work/t2" --epochs 1 --iterations 5
check "cifar needs data" nonzero "cifar10.*--data" -- "$reslab" train --model resnet8 --dataset cifar10 --out "$work/t1"

# An image folder of PPM files (random pixels): a run on it with ten-crop evaluation, then a corrupt image and
# an empty class folder, each named in the error.
make_image_folder "$work/folder"
folder_train=("$reslab" train --model resnet8 --dataset image-folder --data "$work/folder" --scale 18,22
  --eval-resize 18 --eval-crops 10 --batch 4 --iterations 2 --threads 2)
check "train on image folder" 0 "completed after 2 iterations" -- "${folder_train[@]}" --crop 16 --out "$work/f1"
check "folder run config" 0 '"eval_crops": 10' -- cat "$work/f1/config.json"
check "bad crop" nonzero "scale_min 18: expected at least the crop \(20\)" -- "${folder_train[@]}" --crop 20 --out "$work/f2"
echo "garbage" >"$work/folder/val/dog/5.jpg"
check "corrupt image named" nonzero "folder/val/dog/5.jpg: cannot decode" -- "${folder_train[@]}" --crop 16 --out "$work/f3"
mkdir -p "$work/folder/train/empty/sub"
check "empty class named" nonzero "folder/train/empty: class folder with no images" -- "${folder_train[@]}" --crop 16 --out "$work/f4"
check "folder needs data" nonzero "image-folder.*--data" -- "$reslab" train --model resnet8 --dataset image-folder \
  --out "$work/f5" --iterations 1
rm -rf "$work/folder/train/empty" "$work/folder/val/dog/5.jpg"

# A small experiment end to end, then the refusal to overwrite it, then the plot.
cat >"$work/small.json" <<'JSON'
{"name": "small", "grid": {"depth": [8], "residual": [false, true]},
 "data": {"train_size": 512, "test_size": 256}, "optim": {"batch": 64, "epochs": 1}, "train": {"log_every": 2}}
JSON
check "run small" 0 "depth \|" -- "$reslab" run "$work/small.json" --out "$work/small" --threads 2
[[ -f "$work/small/results.json" && -f "$work/small/resnet8/metrics.jsonl" ]] && passes=$((passes + 1)) ||
  { failures=$((failures + 1)); echo "FAIL: run small wrote no results"; }
check "plot written" 0 "PNG" -- head -c 4 "$work/small/curves.png"
check "no overwrite" nonzero "already holds results" -- "$reslab" run "$work/small.json" --out "$work/small"
# Seeds as an axis: every point at each seed, the table as mean ± sd (n) with the paired difference, the runs
# of one configuration grouped in results.json, collect giving the same rows, and one band per configuration.
check "run seeds" 0 "± .*\(2\) .*\[" -- "$reslab" run "$work/small.json" --out "$work/seeds" --seeds 1,2 --threads 2
check "seeds completion line" 0 "resnet8-s2: completed after 8 iterations; train error [0-9]+\.[0-9]{2}%, test error [0-9]+\.[0-9]{2}%$" -- \
  "$reslab" collect "$work/seeds" --no-plot
check "seeds results" 0 "^4 runs, 1 row, seeds \[1, 2\], n 2, interval of 2$" -- /usr/bin/python3 -c "
import json
r = json.load(open('$work/seeds/results.json'))
row, = r['degradation']
p = row['paired']['train_error']
print(f\"{len(r['runs'])} runs, {len(r['degradation'])} row, seeds {row['residual']['seeds']}, n {p['n']},\",
      f\"interval of {len(p['ci95'])}\")"
check "seeds plot" 0 "PNG" -- head -c 4 "$work/seeds/curves.png"
check "seed and seeds" nonzero "either --seed or --seeds" -- "$reslab" run "$work/small.json" --seed 3 --seeds 1,2 \
  --list
check "seeds negative" nonzero "--seeds: -1; expected non-negative" -- "$reslab" run "$work/small.json" --seeds 1,-1 \
  --list
# Three depths or more: the trend of error with depth (a slope per seed), printed, in results.json, and drawn.
cat >"$work/depths.json" <<'JSON'
{"name": "depths", "grid": {"depth": [8, 14, 20], "residual": [true]},
 "data": {"train_size": 256, "test_size": 128}, "optim": {"batch": 64, "iterations": 4}, "train": {"log_every": 2}}
JSON
check "depth trend printed" 0 "^  residual [-+][0-9.]+ \[-?[0-9.]+, -?[0-9.]+\] \(2\) over depths 8,14,20$" -- \
  "$reslab" run "$work/depths.json" --out "$work/depths" --seeds 1,2 --threads 2
check "depth trend in results" 0 "^\[8, 14, 20\] 2$" -- /usr/bin/python3 -c "
import json
t, = json.load(open('$work/depths/results.json'))['depth_trend']
print(t['depths'], t['residual']['train_error']['n'])"
check "depth plot" 0 "PNG" -- head -c 4 "$work/depths/curves-depth.png"
check "no depth plot for one depth" nonzero "" -- test -e "$work/seeds/curves-depth.png"
# A precision axis: bf16 beside float32 at each seed, the bf16 row paired with the float32 row (vs_float32).
cat >"$work/precision.json" <<'JSON'
{"name": "precision", "grid": {"depth": [8], "residual": [true], "precision": ["float32", "bf16"]},
 "data": {"train_size": 128, "test_size": 64}, "optim": {"batch": 32, "iterations": 3},
 "train": {"log_every": 3, "eval_batch": 64}}
JSON
check "precision axis" 0 "-bf16 \(vs float32: residual train [-+][0-9.]+ \[.*\], test [-+][0-9.]+ \[" -- \
  "$reslab" run "$work/precision.json" --out "$work/precision" --seeds 1,2 --threads 2 --no-plot
check "precision runs" 0 "^resnet8-bf16-s1 resnet8-bf16-s2 resnet8-float32-s1 resnet8-float32-s2 2$" -- \
  /usr/bin/python3 -c "
import json
r = json.load(open('$work/precision/results.json'))
bf16 = [row for row in r['degradation'] if row.get('variant') == '-bf16'][0]
print(*sorted(s['run'] for s in r['runs']), bf16['vs_float32']['residual']['train_error']['n'])"
# The same experiment one grid point at a time (as a Slurm array runs it), then collect: the same results.
check "run list" 0 "^0 plain8 plain8 fashion-mnist\|1 resnet8 resnet8 fashion-mnist\|$" -- \
  bash -c "'$reslab' run '$work/small.json' --list | tr '\t\n' ' |'"
check "run index" 0 "resnet8: completed" -- "$reslab" run "$work/small.json" --out "$work/array" --index 1 --threads 2
check "run index: no results yet" nonzero "^$" -- test -e "$work/array/results.json"
check "collect partial" 0 "1 of 2 runs" -- "$reslab" collect "$work/array" --no-plot
check "collect names the missing" 0 "^Not finished \(no summary.json\): plain8$" -- "$reslab" collect "$work/array" \
  --no-plot
check "run slurm index" 0 "plain8: completed" -- env SLURM_ARRAY_TASK_ID=0 "$reslab" run "$work/small.json" \
  --out "$work/array" --threads 2
check "run index out of range" nonzero "--index 2 is out of range: the experiment has 2 grid points" -- \
  "$reslab" run "$work/small.json" --out "$work/array" --index 2
check "slurm index bad" nonzero "SLURM_ARRAY_TASK_ID 'x1'" -- env SLURM_ARRAY_TASK_ID=x1 "$reslab" run \
  "$work/small.json" --out "$work/array"
check "run index refuses overwrite" nonzero "array/resnet8 already holds results" -- "$reslab" run \
  "$work/small.json" --out "$work/array" --index 1
check "collect" 0 "2 of 2 runs" -- "$reslab" collect "$work/array"
check "collect plot" 0 "PNG" -- head -c 4 "$work/array/curves.png"
check "collect same results" 0 "same" -- /usr/bin/python3 -c "
import json
def table(p):
    r = json.load(open(p))
    runs = {s['run']: (s['final'], s['iterations'], s['status']) for s in r['runs']}
    return runs, r['degradation']
print('same' if table('$work/small/results.json') == table('$work/array/results.json') else 'different')"
check "collect nothing" nonzero "none of the experiment's 2 runs" -- bash -c "mkdir -p '$work/empty' && \
  cp '$work/array/config.json' '$work/empty/' && '$reslab' collect '$work/empty'"
check "collect not an experiment" nonzero "nowhere/config.json" -- "$reslab" collect "$work/nowhere"

# Every committed evidence folder: collect on a copy of its runs rebuilds its results.json, every number the
# same (the README and docs/why-residual.md quote these files); only the collecting binary's versions may differ.
for evidence in "$root"/docs/evidence/*/; do
  name=$(basename "$evidence")
  [[ -f $evidence/results.json ]] || continue
  rm -rf "$work/evidence-$name" && cp -r "$evidence" "$work/evidence-$name" && rm "$work/evidence-$name/results.json"
  check "evidence $name: collect" 0 "Results: .*results.json" -- "$reslab" collect "$work/evidence-$name" --no-plot
  check "evidence $name: same results.json" 0 "^same$" -- /usr/bin/python3 -c "
import json
load = lambda p: {k: v for k, v in json.load(open(p)).items() if k != 'versions'}
print('same' if load('$evidence/results.json') == load('$work/evidence-$name/results.json') else 'different')"
done
check "train one" 0 "completed after 4 iterations" -- \
  "$reslab" train --model plain8 --out "$work/one" --train-size 256 --test-size 128 --batch 64 --epochs 1
# Probes on the runs just trained, and on fresh nets; their JSON, plots, and errors that name what is wrong.
check "analyze lesions" 0 "Probe results: .*small/lesions.json" -- "$reslab" analyze lesions "$work/small/plain8" \
  "$work/small/resnet8" --samples 2 --lesion-k 1,2 --threads 2
[[ -f "$work/small/resnet8/probes/lesions.json" && -f "$work/small/lesions.png" ]] && passes=$((passes + 1)) ||
  { failures=$((failures + 1)); echo "FAIL: analyze lesions wrote no per-run JSON or plot"; }
check "analyze refinement" 0 "Probe results: .*small/refinement.json" -- "$reslab" analyze refinement \
  "$work/small/plain8" "$work/small/resnet8" --threads 2
[[ -f "$work/small/resnet8/probes/refinement.json" && -f "$work/small/refinement.png" ]] && passes=$((passes + 1)) ||
  { failures=$((failures + 1)); echo "FAIL: analyze refinement wrote no per-run JSON or plot"; }
check "refinement json" 0 "ok" -- /usr/bin/python3 -c "
import json
subjects = {s['label']: s for s in json.load(open('$work/small/refinement.json'))['subjects']}
assert subjects['plain8']['applies'] is False and subjects['plain8']['reason'], subjects['plain8']
r = subjects['resnet8']
assert r['applies'] and r['examples'] == 256, r
assert [b['against'] for b in r['per_block']] == ['input', 'shortcut_output', 'shortcut_output'], r['per_block']
assert [b['block'] for b in r['readout']] == [2] and r['readout_steps'] == 0, r['readout']
for key in ('cosine_median', 'cosine_mean', 'negative_fraction', 'relative_size_second_half', 'readout_decreases'):
    assert key in r, key
print('ok')"
# Two seeds of one model: each probe's headline figure over the seeds, printed and in the JSON.
cat >"$work/probe_seeds.json" <<'JSON'
{"name": "probe_seeds", "grid": {"depth": [8], "seed": [1, 2]},
 "data": {"train_size": 256, "test_size": 128}, "optim": {"batch": 64, "epochs": 1}}
JSON
check "run probe seeds" 0 "resnet8-s2: completed" -- "$reslab" run "$work/probe_seeds.json" \
  --out "$work/probe_seeds" --threads 2 --no-plot
over="over seeds, resnet8 \(trained; resnet8-s1, resnet8-s2\): cosine of input gradients at lag 1 [-0-9.e]+ ± .* \(2\)"
check "analyze over seeds" 0 "$over" -- "$reslab" analyze shattered "$work/probe_seeds/resnet8-s1" \
  "$work/probe_seeds/resnet8-s2" --points 8 --max-lag 3 --lines 1 --threads 2 --no-plot
check "over seeds json" 0 '"seeds": \[1, 2\]' -- /usr/bin/python3 -c "
import json
print(json.dumps(json.load(open('$work/probe_seeds/shattered.json'))['over_seeds'][0]))"
check "analyze at init" 0 "shattered_init.json" -- "$reslab" analyze shattered --at-init plain8,resnet8 \
  --out "$work/an" --points 8 --max-lag 3 --lines 1 --test-size 64 --threads 2
check "analyze json" 0 '"probe": "shattered"' -- /usr/bin/python3 -m json.tool "$work/an/shattered_init.json"
# Fresh nets at several seeds: one subject per model and seed, and the headline figure over the seeds.
over_init="over seeds, resnet8 \\(init; resnet8-s1, resnet8-s2, resnet8-s3\\): cosine of input gradients at lag 1 .* \\(3\\)"
check "analyze at init seeds" 0 "$over_init" -- "$reslab" analyze shattered --at-init plain8,resnet8 --seeds 1,2,3 \
  --out "$work/an_seeds" --points 8 --max-lag 3 --lines 1 --test-size 64 --threads 2 --no-plot
check "at init seeds json" 0 "ok" -- /usr/bin/python3 -c "
import json
d = json.load(open('$work/an_seeds/shattered_init.json'))
got = sorted((s['label'], s['seed']) for s in d['subjects'])
assert got == [('plain8-s1', 1), ('plain8-s2', 2), ('plain8-s3', 3), ('resnet8-s1', 1), ('resnet8-s2', 2),
               ('resnet8-s3', 3)], got
assert [(o['model'], o['seeds']) for o in d['over_seeds']] == [('plain8', [1, 2, 3]), ('resnet8', [1, 2, 3])], d
skip = ('model', 'depth', 'residual', 'source', 'seeds', 'labels')
for o in d['over_seeds']:
    figure = [v for k, v in o.items() if k not in skip][0]
    assert figure['n'] == 3 and len(set(figure['values'])) == 3, o  # three different nets, not one net thrice
print('ok')"
check "analyze seed twice" nonzero "seeds: 2 is named twice" -- "$reslab" analyze shattered --at-init resnet8 \
  --seeds 2,2
check "unknown probe" nonzero "unknown probe 'lesion'.*lesions" -- "$reslab" analyze lesion "$work/small/plain8"
check "analyze nothing" nonzero "run folders .*--at-init" -- "$reslab" analyze paths
check "analyze no model" nonzero "$work/nomodel/model.pt: missing" -- bash -c \
  "mkdir -p '$work/nomodel' && cp '$work/small/plain8/config.json' '$work/nomodel/' && '$reslab' analyze paths '$work/nomodel'"
cp -r "$work/small/plain8" "$work/corrupt"
printf 'X' | dd of="$work/corrupt/model.pt" bs=1 seek=200 conv=notrunc 2>/dev/null
check "analyze corrupt model" nonzero "corrupt/model.pt: unreadable model file" -- \
  "$reslab" analyze responses "$work/corrupt" --no-plot
check "analyze bad init model" nonzero "--at-init: .*resnet9" -- "$reslab" analyze shattered --at-init resnet9
check "analyze lag" nonzero "max-lag" -- "$reslab" analyze shattered --at-init resnet8 --points 4 --max-lag 4
check "bench json" 0 '"train_img_per_s"' -- "$reslab" bench --model resnet8 --iterations 2 --warmup 1 --json
"$reslab" bench --model resnet8,plain8 --batch 32 --iterations 2 --warmup 1 --epoch --train-size 256 --threads 2 \
  --conv-bound --json >"$work/bench.json" 2>&1
check "bench keys" 0 "ok" -- /usr/bin/python3 -c "
import json, sys
rows = json.load(open('$work/bench.json'))
assert [r['model'] for r in rows] == ['resnet8', 'plain8'], rows
for r in rows:
    for k in ('batch', 'threads', 'train_img_per_s', 'epoch_img_per_s', 'eval_img_per_s', 'macs_per_s', 'peak_rss_mb'):
        assert isinstance(r[k], (int, float)) and r[k] > 0, (k, r)
    assert r['epoch_examples'] == 256 and r['batch'] == 32, r
    assert r['malloc'] == 'keep', r
    assert r['conv'] == 'auto', r
    kernels = r['kernels']
    assert kernels['policy'] == 'auto' and kernels['batch'] == 32 and kernels['source'] in ('measured', 'cache'), r
    assert sorted(kernels['shapes']) == ['16-16-28x28', '32-32-14x14', '64-64-7x7'], kernels
    assert r['conv_bound_img_per_s'] > 0 and r['step_of_conv_bound'] > 0, r
print('ok')"
check "bench glibc malloc" 0 '"malloc": "system"' -- env RESLAB_MALLOC=system "$reslab" bench --model resnet8 \
  --iterations 1 --warmup 0 --json
check "bad RESLAB_MALLOC" 2 "RESLAB_MALLOC: unknown value 'fast' \(expected keep" -- env RESLAB_MALLOC=fast \
  "$reslab" bench --model resnet8 --iterations 1 --warmup 0
check "bench direct convolutions" 0 '"conv": "direct"' -- env RESLAB_CONV=direct "$reslab" bench --model resnet8 \
  --iterations 1 --warmup 0 --json
check "bench mixed Winograd" 0 '"kernel": "winograd-mixed-avx2"' -- env RESLAB_CONV=winograd-mixed \
  RESLAB_CONV_ISA=avx2 "$reslab" bench --model resnet8 --iterations 1 --warmup 0 --json
check "bad RESLAB_CONV" 2 "RESLAB_CONV: unknown value 'fast' \(expected auto" -- env RESLAB_CONV=fast \
  "$reslab" bench --model resnet8 --iterations 1 --warmup 0
check "bad RESLAB_CONV_ISA" 2 "RESLAB_CONV_ISA: 'neon' is not an instruction set .*avx2 or avx512" -- \
  env RESLAB_CONV_ISA=neon "$reslab" bench --model resnet8 --iterations 1 --warmup 0
check "bench ceiling" 0 '"best_macs_per_s"' -- "$reslab" bench --ceiling --batch 4 --iterations 1 --warmup 0 --json
check "bench ceiling winograd" 0 '"kernel": "winograd2x2-avx2"' -- "$reslab" bench --ceiling --batch 4 \
  --iterations 1 --warmup 0 --json
check "bench ceiling picks" 0 '"fastest_above"' -- "$reslab" bench --ceiling --batch 4 --iterations 1 --warmup 0 --json
"$reslab" bench --model resnet8 --batch 8 --iterations 1 --warmup 0 --in-step 2 --json >"$work/in_step.json" 2>&1
check "bench in step" 0 "ok" -- /usr/bin/python3 -c "
import json
r = json.load(open('$work/in_step.json'))
assert [s['shape'] for s in r['in_step']] == ['16-16-28x28', '32-32-14x14', '64-64-7x7'], r
for s in r['in_step']:
    assert s['per_shape'] == r['kernels']['shapes'][s['shape']]['kernel'], s
    if not s['step_seconds']:  # no Winograd kernel on this CPU: direct alone, nothing timed
        assert s['in_step'] == 'direct', s
        continue
    assert s['in_step'] in s['step_seconds'] and 'direct' in s['step_seconds'], s
    assert s['step_seconds'][s['in_step']] == min(s['step_seconds'].values()), s
print('ok')"
check "bench in step printed" 0 "16-16-28x28 +per shape: [a-z0-9-]+ +in the step: " -- "$reslab" bench --model resnet8 \
  --batch 8 --iterations 1 --warmup 0 --in-step 1
check "bench in step ceiling" 2 "--in-step times the CPU's convolution kernels .*--ceiling" -- "$reslab" bench \
  --ceiling --in-step 2
check "bench in step range" nonzero "--in-step: Value -1 not in range" -- "$reslab" bench --model resnet8 --in-step -1
check "bench loader" 0 "loader_train_img_per_s" -- "$reslab" bench --loader --batch 64 --iterations 3 --json
check "bench loader folder" 0 "loader_eval_img_per_s" -- "$reslab" bench --loader --dataset image-folder \
  --data "$work/folder" --crop 16 --batch 4 --iterations 2 --warmup 0 --json

# A run that cannot fit in memory says so before training, with the estimate and what the machine has.
check "memory estimate" nonzero \
  "run 'resnet1202': training resnet1202 at batch 50000 needs about [0-9]+ MiB .* available \(MemAvailable" \
  -- "$reslab" train --model resnet1202 --batch 50000 --train-size 50000 --test-size 100 --out "$work/huge"
check "memory estimate: nothing written" nonzero "^$" -- \
  bash -c "ls '$work/huge'/metrics.jsonl '$work/huge'/checkpoint* 2>/dev/null"

# The Python reference computes what reslab computes: same weights, batch, two SGD steps, same losses.
check "export check" 0 "resnet8: [0-9]+ parameters" -- "$reslab" bench --model resnet8 --batch 8 --nchw \
  --export-check "$work/check.pt"
check "python reference same" 0 "same computation" -- /usr/bin/python3 "$root/scripts/bench_pytorch.py" \
  --check "$work/check.pt"
"$reslab" bench --model plain8 --batch 8 --export-check "$work/check_cl.pt" >/dev/null 2>&1
check "python reference channels-last" 0 "same computation" -- /usr/bin/python3 \
  "$root/scripts/bench_pytorch.py" --check "$work/check_cl.pt"
head -c 1000 "$work/check.pt" >"$work/check_cut.pt"
check "python reference truncated" 1 "check_cut.pt: not a reslab --export-check file" -- /usr/bin/python3 \
  "$root/scripts/bench_pytorch.py" --check "$work/check_cut.pt"
check "export check two models" nonzero "name one model" -- "$reslab" bench --model resnet8,plain8 \
  --export-check "$work/two.pt"
check "export check unwritable" nonzero "cannot write $work/none/x.pt" -- "$reslab" bench --model resnet8 --batch 4 \
  --export-check "$work/none/x.pt"
check "bench unknown device" nonzero "unknown device 'gpu' \(expected cpu, cuda or cuda:N\)" -- "$reslab" bench \
  --device gpu
check "train unknown device" nonzero "device.*'tpu'" -- "$reslab" train --model resnet8 --out "$work/dev" --device tpu

# Ctrl-C during training: the step finishes, the summary says "interrupted", the exit code is 130.
interrupt_after_first_record "$work/int" "$reslab" train --model resnet8 --out "$work/int" --train-size 512 \
  --test-size 128 --batch 16 --epochs 50 --log-every 1 >"$work/int.log" 2>&1
rc=$?
if [[ $rc -eq 130 ]] && grep -q '"status": "interrupted"' "$work/int/summary.json" 2>/dev/null; then
  passes=$((passes + 1))
else
  failures=$((failures + 1))
  echo "FAIL: interrupt (rc=$rc)"
  cat "$work/int.log" | tail -5
fi

# SIGKILL at an arbitrary moment, then --resume: metrics.jsonl ends identical to an uninterrupted run's
# (timing fields aside). The kill lands wherever the run happens to be, checkpoint writes included.
train_args=(train --model resnet8 --train-size 512 --test-size 128 --batch 32 --epochs 4 --log-every 3 --threads 2)
"$reslab" "${train_args[@]}" --out "$work/ref" >/dev/null 2>&1
for lines in 4 9 15; do
  out="$work/kill$lines"
  "$reslab" "${train_args[@]}" --out "$out" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    [[ -f "$out/metrics.jsonl" && $(wc -l <"$out/metrics.jsonl") -ge $lines ]] && break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  "$reslab" "${train_args[@]}" --out "$out" --resume >"$work/resume.log" 2>&1
  rc=$?
  if [[ $rc -eq 0 ]] && /usr/bin/python3 - "$work/ref/metrics.jsonl" "$out/metrics.jsonl" <<'PY'
import json, sys
def load(path):
    rows = [json.loads(line) for line in open(path)]
    for r in rows:
        r.pop("img_per_s", None)
    return rows
sys.exit(0 if load(sys.argv[1]) == load(sys.argv[2]) else 1)
PY
  then
    passes=$((passes + 1))
  else
    failures=$((failures + 1))
    echo "FAIL: resume after SIGKILL at >= $lines records (rc=$rc)"
    tail -5 "$work/resume.log"
  fi
done

# A full disk while writing a checkpoint: a tmpfs with room for one checkpoint, not two. The run stops with an
# error naming the file, the checkpoint before is intact, and the run moved to a larger disk resumes from it and
# ends with the uninterrupted run's records. Where no tmpfs can be mounted (not root, no user namespaces), a
# file-size limit (ulimit -f: EFBIG) stands in for the full disk, and the error alone is checked.
ckpt=$(ls "$work"/ref/checkpoint-*.pt | head -1)
size=$(($(stat -c %s "$ckpt") * 3 / 2 + 65536))
mkdir -p "$work/small"
mounter=()
if mount -t tmpfs -o size=$size tmpfs "$work/small" 2>/dev/null; then
  mounter=(direct)
elif unshare -rm true 2>/dev/null; then
  mounter=(unshare -rm)
fi
if [[ ${#mounter[@]} -gt 0 ]]; then
  if [[ ${mounter[0]} == direct ]]; then
    "$reslab" "${train_args[@]}" --out "$work/small/run" >"$work/full.log" 2>&1
    rc=$?
    cp -r "$work/small/run" "$work/moved"
    umount "$work/small"
  else
    unshare -rm bash -c "mount -t tmpfs -o size=$size tmpfs '$work/small' && \
      '$reslab' ${train_args[*]} --out '$work/small/run' >'$work/full.log' 2>&1; echo \$? >'$work/full.rc'; \
      cp -r '$work/small/run' '$work/moved'"
    rc=$(cat "$work/full.rc")
  fi
  check "disk full: clear error" 0 "checkpoint-0+32.pt.tmp: cannot write checkpoint: No space left on device" -- \
    bash -c "[[ $rc -ne 0 ]] && cat '$work/full.log'"
  check "disk full: one checkpoint left" 0 "^1 checkpoint-000000016.pt$" -- \
    bash -c "echo \$(ls '$work/moved' | grep -c checkpoint) \$(ls '$work/moved' | grep checkpoint)"
  "$reslab" "${train_args[@]}" --out "$work/moved" --resume >"$work/moved.log" 2>&1
  check "disk full: resumes from it" 0 "resuming resnet8 at iteration 16" -- cat "$work/moved.log"
  check "disk full: same records" 0 "same" -- /usr/bin/python3 -c "
import json, sys
load = lambda p: [{k: v for k, v in json.loads(l).items() if k != 'img_per_s'} for l in open(p)]
print('same' if load('$work/ref/metrics.jsonl') == load('$work/moved/metrics.jsonl') else 'different')"
else
  check "file too large: clear error" nonzero "checkpoint-0+16.pt.tmp: cannot write checkpoint: File too large" -- \
    bash -c "ulimit -f $((size / 2048)); exec '$reslab' ${train_args[*]} --out '$work/fsize'"
fi

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
