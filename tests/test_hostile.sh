#!/usr/bin/env bash
# Hostile input as a new user would try it on the reslab program: files and flags that crashed it, wrote outside
# the output folder, injected lines into Slurm scripts or were silently accepted. Each must end in a non-zero
# exit and an error naming the file, key or flag, with nothing written where it should not be.
# Usage: test_hostile.sh path/to/reslab
set -uo pipefail
reslab=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$0")/check.sh"
cd "$work" || exit 1

# Nesting a few hundred thousand levels deep, at the top or inside a value: an error, not a segmentation fault.
/usr/bin/python3 -c "print('[' * 300000 + ']' * 300000)" >deep_top.json
/usr/bin/python3 -c "print('{\"name\": ' + '[' * 300000 + '\"x\"' + ']' * 300000 + '}')" >deep_name.json
check "deep top" nonzero "deep_top.json: key '\\[0\\]\\[0\\].*nested more than 64" -- "$reslab" run deep_top.json
check "deep name" nonzero "deep_name.json: key 'name\[0\]\[0\].*nested more than 64" -- "$reslab" run deep_name.json
check "deep slurm" nonzero "deep_name.json: key 'name" -- "$reslab" slurm deep_name.json

# A name that is a path: nothing is written outside runs/.
cat >escape.json <<'JSON'
{"name": "../../escaped", "grid": {"depth": [8]}, "data": {"train_size": 64, "test_size": 64},
 "optim": {"batch": 32, "iterations": 1}}
JSON
mkdir -p inside/deeper
check "escaping name" nonzero "escape.json: key 'name' has value \"../../escaped\".*'/'" -- \
  bash -c "cd inside/deeper && '$reslab' run ../../escape.json"
check "nothing escaped" 0 "^$" -- bash -c "! ls -d escaped inside/escaped inside/deeper/runs 2>/dev/null"

# Duplicate keys, numbers out of range, and --epochs inf: errors naming the key or flag.
echo '{"name": "dup", "grid": {"depth": [8]}, "optim": {"epochs": 1, "lr": 0.1, "lr": 9}}' >dup.json
check "duplicate key" nonzero "dup.json: key 'optim.lr' appears twice" -- "$reslab" run dup.json --list
echo '{"name": "big", "grid": {"depth": [8]}, "optim": {"epochs": 1e300}}' >big.json
check "epochs 1e300" nonzero "big.json: run 'resnet8': optim.epochs = 1e\+300; expected a number of epochs" -- \
  "$reslab" run big.json --list
echo '{"name": "over", "grid": {"depth": [8]}, "optim": {"epochs": 1e999}}' >over.json
check "epochs 1e999" nonzero "over.json: key 'optim.epochs' has value 1e999; expected a finite number" -- \
  "$reslab" run over.json --list
check "epochs inf" nonzero "optim.epochs = inf" -- "$reslab" train --model resnet8 --out t_inf --epochs inf
check "nothing written for inf" 0 "^$" -- test ! -e t_inf
check "empty out" nonzero "--out: expected a value, got an empty string" -- "$reslab" train --model resnet8 --out ""
check "empty run out" nonzero "--out: expected a value" -- "$reslab" run dup.json --out ""
check "bench huge batch" nonzero "bench: --batch must be 1 to 1048576" -- "$reslab" bench --model resnet8 \
  --batch 100000000000
check "analyze threads" nonzero "analyze: --threads -3" -- "$reslab" analyze shattered --at-init resnet8 --threads -3
check "huge classes" nonzero "100000000000 classes; expected 2 to 100000" -- \
  "$reslab" info resnet20 --classes 100000000000
/usr/bin/python3 -c "
import json
axis = list(range(9000))
print(json.dumps({'name': 'wide', 'grid': {'model': ['resnet8'] * 9000, 'lr': [0.1] * 9000, 'batch': [8] * 9000,
                  'seed': axis, 'shortcut': ['A'] * 9000}, 'optim': {'epochs': 1}}))" >wide.json
check "grid overflow" nonzero "wide.json: the grid has more than 10000 points \(9000 models" -- \
  "$reslab" run wide.json --list

# Slurm scripts: no value from an experiment file or the command line adds a line.
cat >good.json <<'JSON'
{"name": "good", "grid": {"depth": [8], "residual": [false, true]}, "data": {"train_size": 64, "test_size": 64},
 "optim": {"batch": 32, "iterations": 1}}
JSON
check "slurm baseline" 0 "Slurm scripts for 2 grid points" -- "$reslab" slurm good.json --out "$work/s0" \
  --partition debug --time 00:10:00
lines() { cat "$1"/slurm/array.sbatch "$1"/slurm/collect.sbatch "$1"/slurm/submit.sh | wc -l; }
baseline=$(lines "$work/s0")
printf '{"name": "x\\n#SBATCH --wrap=id", "grid": {"depth": [8]}, "optim": {"epochs": 1}}\n' >newline_name.json
check "slurm name newline" nonzero "newline_name.json: key 'name'.*control character" -- \
  "$reslab" slurm newline_name.json --out "$work/s1"
check "slurm partition newline" nonzero "--partition .*control character" -- \
  "$reslab" slurm good.json --out "$work/s2" --partition "$(printf 'debug\n#SBATCH --wrap=id')"
check "slurm partition word" nonzero "--partition 'a b'" -- "$reslab" slurm good.json --out "$work/s3" --partition "a b"
check "slurm time" nonzero "--time '1;id'" -- "$reslab" slurm good.json --out "$work/s4" --time "1;id"
check "slurm arg newline" nonzero "argument after --.*control character" -- \
  "$reslab" slurm good.json --out "$work/s5" -- --lr "$(printf '0.1\nid')"
check "slurm out newline" nonzero "control character" -- "$reslab" slurm good.json --out "$work/$(printf 'a\nb')"
mkdir -p "dir with 'quote"
cp good.json "dir with 'quote/exp.json"
check "slurm quoted path" 0 "Slurm scripts for 2 grid points" -- "$reslab" slurm "dir with 'quote/exp.json" \
  --out "$work/s6" --partition debug --time 00:10:00 -- --lr '0.05' --log-every 1
check "slurm lines unchanged" 0 "^$baseline$" -- lines "$work/s6"
check "slurm arguments quoted" 0 "--resume --lr 0.05 --log-every 1$" -- cat "$work/s6/slurm/array.sbatch"
# GPUs: each rank asks for its own and trains on it; a CPU device beside them, or a count out of range, is refused.
check "slurm gpus" 0 "2 grid points \(2 ranks each, 1 GPU per rank\)" -- "$reslab" slurm good.json --out "$work/g0" \
  --gpus-per-task 1 --tasks-per-node 2
check "slurm gpus sbatch" 0 "^#SBATCH --gpus-per-task=1$" -- cat "$work/g0/slurm/array.sbatch"
check "slurm gpus device" 0 "--resume --device cuda$" -- cat "$work/g0/slurm/array.sbatch"
check "slurm gpus own device" 0 "--resume --device cuda:0$" -- bash -c "'$reslab' slurm good.json --out '$work/g1' \
  --gpus-per-task 2 -- --device cuda:0 >/dev/null && cat '$work/g1/slurm/array.sbatch'"
check "slurm gpus cpu" nonzero "--gpus-per-task 1 with '--device cpu' after --: .*GPUs idle" -- "$reslab" slurm \
  good.json --out "$work/s7" --gpus-per-task 1 -- --device cpu
check "slurm gpus range" nonzero "--gpus-per-task 65: expected 0 .* to 64" -- "$reslab" slurm good.json \
  --out "$work/s8" --gpus-per-task 65
check "slurm no gpus" 1 "^0$" -- grep -c gpus "$work/s0/slurm/array.sbatch"
for s in s1 s2 s3 s4 s5 s7 s8; do
  check "slurm $s wrote nothing" 0 "^$" -- test ! -e "$work/$s/slurm"
done

# Run folders: a summary.json of the wrong shape on --resume and collect, a model.pt of another network.
cat >small.json <<'JSON'
{"name": "small", "grid": {"depth": [8], "residual": [false, true]}, "data": {"train_size": 128, "test_size": 64},
 "optim": {"batch": 64, "iterations": 2}}
JSON
check "small run" 0 "resnet8: completed" -- "$reslab" run small.json --out small --threads 2 --no-plot
cp -r small bad_summary
echo '{"run": "resnet8", "status": 7, "iterations": 2, "final": {}}' >bad_summary/resnet8/summary.json
check "collect bad summary" nonzero "bad_summary/resnet8/summary.json: key 'status' has value 7" -- \
  "$reslab" collect bad_summary --no-plot
check "resume bad summary" nonzero "bad_summary/resnet8/summary.json: key 'status'" -- \
  "$reslab" run small.json --out bad_summary --resume --threads 2 --no-plot
cp -r small bad_config
/usr/bin/python3 -c "
import json
c = json.load(open('bad_config/config.json'))
c['runs'][0]['name'] = '../../small/plain8'
json.dump(c, open('bad_config/config.json', 'w'))"
check "collect escaping run name" nonzero "bad_config/config.json: runs\[0\].name: \"../../small/plain8\"" -- \
  "$reslab" collect bad_config --no-plot
cp -r small swapped
cp small/plain8/model.pt swapped/resnet8/model.pt
check "analyze swapped model" nonzero "swapped/resnet8/model.pt: records model \"plain8\", but .*config.json says \"resnet8\"" -- \
  "$reslab" analyze responses swapped/resnet8 --no-plot
check "analyze own model" 0 "Probe results" -- "$reslab" analyze responses small/resnet8 --no-plot --threads 2

# A gzip file whose header declares a few bytes and whose content expands to hundreds of megabytes.
mkdir -p bomb
/usr/bin/python3 -c "
import gzip
images = bytes([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28])
labels = bytes([0, 0, 8, 1, 0, 0, 0, 10]) + bytes(range(10))
for split in ('train', 't10k'):
    open('bomb/%s-labels-idx1-ubyte' % split, 'wb').write(labels)
open('bomb/t10k-images-idx3-ubyte', 'wb').write(images + bytes(7840))
with gzip.open('bomb/train-images-idx3-ubyte.gz', 'wb', 9) as f:
    f.write(images)
    block = bytes(1 << 20)
    for _ in range(300):
        f.write(block)"
check "gzip bomb" nonzero "bomb/train-images-idx3-ubyte.gz: expands past the 7856 bytes its header declares" -- \
  "$reslab" train --model resnet8 --out t_bomb --data bomb --iterations 1

# --reuse of a folder that is not there: an error naming it before anything is written.
sed 's#"../../escaped"#"reuse_ok"#' escape.json >reuse_ok.json
check "reuse missing" nonzero "no_such_runs: --reuse expects an experiment's output folder" -- \
  "$reslab" run reuse_ok.json --out t_reuse --reuse no_such_runs
check "nothing written for reuse" 0 "^$" -- test ! -e t_reuse

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
