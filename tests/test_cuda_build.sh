#!/usr/bin/env bash
# reslab built against the CUDA LibTorch inside PyPI's PyTorch 2.x (scripts/build-cuda), checked on the machine at
# hand: it runs on the CPU and computes what that PyTorch computes, trains, resumes a run the Debian build began,
# joins two ranks (Gloo on the CPU; NCCL built in, over two GPUs where there are two), and --device cuda either
# trains (a GPU is there) or stops with the error that says none is.
# Usage: test_cuda_build.sh path/to/cuda/reslab path/to/torch2/python [path/to/debian/reslab]
set -uo pipefail
reslab=$1
python=$2
debian=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESLAB_CACHE_DIR="$work/kernel-cache"
source "$(dirname "$0")/check.sh"

small=(--model resnet8 --train-size 256 --test-size 64 --batch 32)

check "linked against a CUDA LibTorch" 0 "libtorch_cuda" -- bash -c "ldd '$reslab' | grep libtorch_cuda"
check "info counts resnet56" 0 '"params": 853018' -- "$reslab" info resnet56 --json
check "train on the CPU" 0 "resnet8: completed after 8 iterations" -- \
  "$reslab" train "${small[@]}" --threads 2 --iterations 8 --log-every 4 --out "$work/cpu"
check "summary" 0 '"status": "completed"' -- cat "$work/cpu/summary.json"
# bf16 autocast through LibTorch 2.x's autocast API (one switch per device type since 2.4), on the CPU here.
check "train bf16 on the CPU" 0 "resnet8: completed after 4 iterations" -- \
  "$reslab" train "${small[@]}" --threads 2 --iterations 4 --set train.precision=bf16 --out "$work/bf16"
check "bf16 recorded" 0 '"conv": "direct \(bf16 autocast\)"' -- cat "$work/bf16/summary.json"

# The same weights, batch and two SGD steps as the Python PyTorch this LibTorch came with: the same losses.
check "export check" 0 "resnet8: [0-9]+ parameters" -- "$reslab" bench --model resnet8 --batch 8 --nchw \
  --export-check "$work/check.pt"
check "PyTorch 2.x same computation" 0 "same computation" -- "$python" "$root/scripts/bench_pytorch.py" \
  --check "$work/check.pt"

# CUDA graphs are compiled in (train.cuda_graphs; lib/train/graphs.cpp), and refused on the CPU.
check "CUDA graphs linked" 0 "at::cuda::CUDAGraph::capture_begin" -- bash -c "nm -C '$reslab' | grep CUDAGraph::capture_begin"
check "graphs need a CUDA device" nonzero "train.cuda_graphs = true; expected false on the CPU" -- \
  "$reslab" train "${small[@]}" --iterations 4 --set train.cuda_graphs=true --out "$work/graphs_cpu"

# Two ranks on this machine (c10d Gloo of this LibTorch).
check "two ranks" 0 "\[rank 0\] resnet8: completed after 4 iterations" -- \
  "$root/scripts/launch-local" 2 "$reslab" train "${small[@]}" --threads 1 --iterations 4 --out "$work/two"
# NCCL is built in (ranks on GPUs reduce over ProcessGroupNCCL); ranks on the CPU cannot use it, and say why.
check "ProcessGroupNCCL linked" 0 "ProcessGroupNCCL::ProcessGroupNCCL" -- bash -c "nm -DC '$reslab' | grep ProcessGroupNCCL"
check "NCCL needs GPUs" nonzero "backend 'nccl' reduces tensors on GPUs, but the ranks train on 'cpu'" -- \
  "$root/scripts/launch-local" 2 "$reslab" train "${small[@]}" --threads 1 --iterations 4 --dist-backend nccl \
  --out "$work/nccl_cpu"

if "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  check "train on the GPU" 0 "resnet8: completed after 8 iterations" -- \
    "$reslab" train "${small[@]}" --iterations 8 --device cuda --out "$work/gpu"
  check "train bf16 on the GPU" 0 "resnet8: completed after 8 iterations" -- \
    "$reslab" train "${small[@]}" --iterations 8 --device cuda --set train.precision=bf16 --out "$work/gpu-bf16"
  # CUDA graphs: the same run replayed from captured steps (3 eager warm-up steps, then one capture per learning
  # rate), against the eager run of the same seed: the same losses up to cuDNN's own nondeterminism.
  graphed=("${small[@]}" --iterations 12 --log-every 4 --device cuda)
  check "train eager on the GPU" 0 "resnet8: completed after 12 iterations" -- \
    "$reslab" train "${graphed[@]}" --out "$work/gpu-eager"
  check "train with CUDA graphs" 0 "resnet8: completed after 12 iterations" -- \
    "$reslab" train "${graphed[@]}" --set train.cuda_graphs=true --out "$work/gpu-graphs"
  check "graphs replayed" 0 '"replays": 9' -- cat "$work/gpu-graphs/summary.json"
  check "graphs: the eager run's losses" 0 "same losses" -- "$python" -c '
import json, sys
def losses(d):
    return [r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if r.get("kind") == "train"]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 3, (a, b)
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print("same losses" if worst < 1e-4 else "losses differ by %.2e" % worst, a, b)' "$work/gpu-eager" "$work/gpu-graphs"
  check "bench --cuda-graphs" 0 '"replays"' -- "$reslab" bench --model resnet8 --device cuda --cuda-graphs \
    --iterations 5 --json
  # Two ranks over NCCL need two GPUs (NCCL refuses two ranks on one).
  if "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.device_count() >= 2 else 1)" 2>/dev/null; then
    check "two ranks over NCCL" 0 "\[rank 0\] data-parallel: 2 ranks .*, NCCL" -- "$root/scripts/launch-local" 2 \
      "$reslab" train "${small[@]}" --iterations 8 --device cuda --out "$work/nccl"
  fi
else
  check "no GPU: the error says so" nonzero "'cuda' asked for, but this LibTorch build or machine has no CUDA device" \
    -- "$reslab" train "${small[@]}" --iterations 8 --device cuda --out "$work/gpu"
  check "no GPU: nothing written" nonzero "^$" -- test -e "$work/gpu/metrics.jsonl"
  check "no GPU: no graphs to bench" nonzero "bench --cuda-graphs replays a model's step and evaluation on a CUDA" \
    -- "$reslab" bench --model resnet8 --cuda-graphs --iterations 1
fi

# A run begun by Debian's LibTorch 1.13 build, interrupted (Ctrl-C), goes on in this one: its checkpoint crosses
# LibTorch versions.
if [[ -n $debian ]]; then
  moved=("${small[@]}" --threads 2 --epochs 20 --log-every 1 --out "$work/moved")
  interrupt_after_first_record "$work/moved" "$debian" train "${moved[@]}" >"$work/debian.log" 2>&1
  check "Debian build's run interrupted" 0 '"status": "interrupted"' -- cat "$work/moved/summary.json"
  check "resumed here" 0 "resuming resnet8 at iteration [1-9]" -- "$reslab" train "${moved[@]}" --resume
  check "and completed here" 0 '"status": "completed"' -- cat "$work/moved/summary.json"
fi

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
