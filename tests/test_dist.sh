#!/usr/bin/env bash
# Data-parallel reslab as a user launches it: two ranks through scripts/launch-local, only rank 0 writing, a
# killed rank and a hung rank stopping the other with a clear error, and a resume of the killed run that ends
# with the uninterrupted run's records.
# Usage: test_dist.sh path/to/reslab
set -uo pipefail
reslab=$1
root=$(cd "$(dirname "$0")/.." && pwd)
launch=$root/scripts/launch-local
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
source "$(dirname "$0")/check.sh"

# Records without their timing, for comparing runs.
same_records() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
load = lambda p: [{k: v for k, v in json.loads(l).items() if k != 'img_per_s'} for l in open(p)]
a, b = load(sys.argv[1]), load(sys.argv[2])
print("same" if a == b else f"differ: {len(a)} vs {len(b)} records; first difference: " +
      str(next(((x, y) for x, y in zip(a, b) if x != y), None)))
PY
}

small=(--model resnet8 --train-size 1024 --test-size 500 --batch 64 --threads 1)

# Two ranks, one run: rank 0 reports and writes, every window and evaluation once.
check "two ranks train" 0 "\[rank 0\] resnet8: completed after 32 iterations" -- \
  "$launch" 2 "$reslab" train "${small[@]}" --iterations 32 --log-every 8 --out "$work/two"
check "rank 1 is quiet" 1 "" -- grep -q "\[rank 1\] resnet8" <("$launch" 2 "$reslab" train "${small[@]}" \
  --iterations 4 --out "$work/quiet")
check "one record per window" 0 "^4$" -- bash -c "grep -c '\"kind\":\"train\"' '$work/two/metrics.jsonl'"
check "summary world size" 0 '"world_size": 2' -- cat "$work/two/summary.json"
check "model written" 0 "model.pt" -- ls "$work/two"

# Synchronised BN: the first step is the one-process step on the same global batch.
check "sync-bn run" 0 "completed after 2 iterations" -- \
  "$launch" 2 "$reslab" train "${small[@]}" --iterations 2 --log-every 1 --sync-bn --out "$work/sync"
check "one process run" 0 "completed after 2 iterations" -- \
  "$reslab" train "${small[@]}" --iterations 2 --log-every 1 --out "$work/single"
check "sync-bn first loss" 0 "close" -- /usr/bin/python3 -c "
import json
first = lambda p: next(json.loads(l)['loss'] for l in open(p) if '\"train\"' in l)
a, b = first('$work/sync/metrics.jsonl'), first('$work/single/metrics.jsonl')
print('close' if abs(a - b) <= 1e-5 * abs(b) else f'{a} vs {b}')"
check "sync-bn in config" 0 '"sync_bn": true' -- cat "$work/sync/config.json"

# Probes on rank 0 beside synchronised BN: their extra passes use rank-local statistics, no stray collective.
cat >"$work/probed.json" <<'JSON'
{"name": "probed", "grid": {"depth": [8]}, "data": {"train_size": 512, "test_size": 200},
 "optim": {"iterations": 6, "batch": 64}, "train": {"log_every": 2}, "threads": 1,
 "dist": {"sync_bn": true, "timeout_s": 60},
 "probes": {"during_training": ["grad_norms", "grad_snr"], "at": [0, 3], "settings": {"batch": 8, "samples": 2}}}
JSON
check "probes with sync-bn" 0 "\[rank 0\] resnet8: completed after 6 iterations" -- \
  "$launch" 2 "$reslab" run "$work/probed.json" --out "$work/probed" --no-plot
check "probe records" 0 "^4$" -- bash -c "grep -c '\"kind\":\"probe\"' '$work/probed/resnet8/metrics.jsonl'"

# An image folder: each rank decodes only its share of every batch.
make_image_folder "$work/folder"
check "two ranks on an image folder" 0 "\[rank 0\] resnet8: completed after 4 iterations" -- \
  "$launch" 2 "$reslab" train --model resnet8 --dataset image-folder --data "$work/folder" --crop 16 --scale 18,22 \
  --eval-resize 18 --eval-crops 10 --batch 4 --iterations 4 --threads 1 --workers 1 --out "$work/folder_run"

# Launch errors name what is wrong.
check "rank missing" nonzero "WORLD_SIZE is 2 but RANK is not set" -- \
  env WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29999 "$reslab" train "${small[@]}" --iterations 1 --out "$work/e1"
check "uneven batch" nonzero "optim.batch 64 does not split evenly across 3 ranks" -- \
  "$launch" 3 "$reslab" train "${small[@]}" --iterations 1 --out "$work/e2"
check "nobody joins" nonzero "rank 0 of 2: the rendezvous at 127.0.0.1:[0-9]+ failed within 3 s" -- \
  env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((20000 + RANDOM % 12000)) \
  "$reslab" train "${small[@]}" --iterations 1 --dist-timeout 3 --out "$work/e3"
check "gloo named" 0 "\[rank 0\] data-parallel: 2 ranks .*, Gloo$" -- \
  "$launch" 2 "$reslab" train "${small[@]}" --iterations 1 --dist-backend gloo --out "$work/gloo"
check "nccl on the CPU" nonzero "run 'resnet8': dist.backend: backend 'nccl' reduces tensors on GPUs, but the ranks \
train on 'cpu'" -- "$launch" 2 "$reslab" train "${small[@]}" --iterations 1 --dist-backend nccl --out "$work/e4"
check "nccl wrote nothing" 0 "" -- test ! -e "$work/e4/metrics.jsonl"
check "bad backend" nonzero "dist.backend = \"mpi\"; expected auto, gloo or nccl" -- \
  "$launch" 2 "$reslab" train "${small[@]}" --iterations 1 --dist-backend mpi --out "$work/e5"
check "results kept" nonzero "already holds results" -- \
  "$launch" 2 "$reslab" train "${small[@]}" --iterations 1 --out "$work/two"

# The bench across ranks: the all-reduce alone, and the data-parallel step.
check "allreduce needs ranks" nonzero "launch it as several" -- "$reslab" bench --allreduce-mb 1
check "allreduce bench" 0 "\[rank 0\] +1\.0000 +[0-9.]+ +[0-9.]+ +[0-9.]+" -- \
  "$launch" 2 "$reslab" bench --allreduce-mb 1 --iterations 3 --warmup 1
check "data-parallel bench" 0 "2 ranks, a share of 32 images" -- \
  "$launch" 2 "$reslab" bench --model resnet8 --batch 64 --iterations 2 --warmup 1

# Starts rank R of two in the background on port P, into OUT, logging to LOG; sets $started.
start_rank() {  # start_rank R PORT OUT LOG ARGS...
  local r=$1 port=$2 out=$3 log=$4
  shift 4
  RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$reslab" train "${small[@]}" --out "$out" "$@" >"$log" 2>&1 &
  started=$!
  pids+=("$started")
}
# Waits until FILE has a line matching PATTERN (up to 120 s).
wait_for() {
  for _ in $(seq 600); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
# Waits for PID (in this shell: a subshell cannot wait for it) and sets $finished to "rc=N after S s".
finish() {
  local start=$SECONDS rc
  wait "$1"
  rc=$?
  finished="rc=$rc after $((SECONDS - start)) s"
}

# The uninterrupted two-rank run the killed one must end up equal to.
long=(--iterations 96 --log-every 8 --dist-timeout 20)
check "reference run" 0 "completed after 96 iterations" -- "$launch" 2 "$reslab" train "${long[@]}" "${small[@]}" \
  --out "$work/ref"

# A killed rank: the other stops at once (the connection closes) with an error naming itself and the step.
port=$((20000 + RANDOM % 12000))
start_rank 0 "$port" "$work/kill" "$work/kill0.log" "${long[@]}"
r0=$started
start_rank 1 "$port" "$work/kill" "$work/kill1.log" "${long[@]}"
r1=$started
if wait_for "$work/kill/metrics.jsonl" '"kind":"eval"'; then
  kill -9 "$r1"
  finish "$r0"
  check "killed rank: the other stops" 0 "rc=[1-9][0-9]* after ([0-9]|[12][0-9]) s" -- echo "$finished"
  check "killed rank: error" 0 "rank 0 of 2: .* failed \(another rank stopped" -- cat "$work/kill0.log"
else
  failures=$((failures + 1))
  echo "FAIL: killed rank: the run wrote no evaluation"; tail -5 "$work/kill0.log"
fi
# Every rank resumes from rank 0's checkpoint and the run ends as if never stopped.
check "killed run resumes" 0 "\[rank 0\] resuming resnet8 at iteration (16|32|48|64|80)" -- \
  "$launch" 2 "$reslab" train "${long[@]}" "${small[@]}" --out "$work/kill" --resume
check "resumed records" 0 "^same$" -- same_records "$work/ref/metrics.jsonl" "$work/kill/metrics.jsonl"

# Ctrl-C in a terminal: SIGINT to launch-local's whole process group (its own session here, SIGINT restored:
# a background job of this script would ignore it). Every rank stops at the same iteration, rank 0 checkpoints,
# and the resume matches.
setsid env --default-signal=INT "$launch" 2 "$reslab" train "${long[@]}" "${small[@]}" --out "$work/int" \
  >"$work/int.log" 2>&1 &
li=$!
pids+=("$li")
if wait_for "$work/int/metrics.jsonl" '"kind":"train"'; then
  kill -INT -- -"$li"
  finish "$li"
  check "interrupt: exit code" 0 "rc=130 after" -- echo "$finished"
  check "interrupt: summary" 0 '"status": "interrupted"' -- cat "$work/int/summary.json"
  check "interrupt: output kept" 0 "\[rank 0\] Interrupted: continue with the same command and --resume" -- cat "$work/int.log"
  check "interrupt: resumes" 0 "completed after 96 iterations" -- \
    "$launch" 2 "$reslab" train "${long[@]}" "${small[@]}" --out "$work/int" --resume
  check "interrupt: same records" 0 "^same$" -- same_records "$work/ref/metrics.jsonl" "$work/int/metrics.jsonl"
else
  failures=$((failures + 1))
  echo "FAIL: interrupt: the run wrote no record"; tail -5 "$work/int.log"
fi

# A hung rank (stopped, its sockets open): the other gives up after the timeout, with an error that says so.
port=$((20000 + RANDOM % 12000))
start_rank 0 "$port" "$work/hang" "$work/hang0.log" --iterations 2000 --dist-timeout 5
h0=$started
start_rank 1 "$port" "$work/hang" "$work/hang1.log" --iterations 2000 --dist-timeout 5
h1=$started
if wait_for "$work/hang/metrics.jsonl" '"kind":"train"'; then
  kill -STOP "$h1"
  finish "$h0"
  check "hung rank: the other stops" 0 "rc=[1-9][0-9]* after ([4-9]|[1-5][0-9]) s" -- echo "$finished"
  check "hung rank: error" 0 "rank 0 of 2: .*did not answer within 5 s" -- cat "$work/hang0.log"
  kill -9 "$h1" 2>/dev/null
else
  failures=$((failures + 1))
  echo "FAIL: hung rank: the run wrote no record"; tail -5 "$work/hang0.log"
fi

echo "test_dist: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
