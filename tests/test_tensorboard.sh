#!/usr/bin/env bash
# reslab's files read with the tools researchers use: every run's TensorBoard event file through TensorBoard's own
# reader (every scalar against metrics.jsonl, each step once, also after a run killed with SIGKILL and resumed),
# and metrics.jsonl and results.json through the one pandas call the README documents for each.
# Usage: test_tensorboard.sh path/to/reslab
set -uo pipefail
reslab=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
python=$("$root/scripts/python-tools" | tail -1) || { echo "FAIL: scripts/python-tools could not install tensorboard and pandas"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

cat >tb.json <<'JSON'
{"name": "tb", "grid": {"depth": [8], "residual": [true]},
 "data": {"train_size": 512, "val_size": 64, "test_size": 64},
 "optim": {"batch": 32, "epochs": 4, "schedule": {"milestones": [3], "unit": "epochs"}},
 "train": {"log_every": 8},
 "probes": {"during_training": ["grad_norms", "grad_snr"], "at": [0, 20]},
 "threads": 2}
JSON
"$reslab" run tb.json --out tb --no-plot >run.log 2>&1 || { cat run.log; fail "reslab run"; }
grep -q "Watch it: tensorboard --logdir tb" run.log || fail "no tensorboard --logdir line in: $(head -3 run.log)"

# A run killed with SIGKILL after its first checkpoint and a record more, then resumed.
"$reslab" run tb.json --out killed --no-plot --index 0 >killed.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  if ls killed/resnet8/checkpoint-*.pt >/dev/null 2>&1; then
    lines=$(wc -l <killed/resnet8/metrics.jsonl)
    while kill -0 "$pid" 2>/dev/null && (($(wc -l <killed/resnet8/metrics.jsonl) <= lines)); do sleep 0.02; done
    kill -9 "$pid"
    break
  fi
  sleep 0.05
done
wait "$pid" 2>/dev/null
[[ -e killed/resnet8/summary.json ]] && fail "the run finished before it could be killed; make it longer"
"$reslab" run tb.json --out killed --no-plot --index 0 --resume >resume.log 2>&1 || { cat resume.log; fail "resume"; }
grep -q "resuming resnet8" resume.log || fail "the killed run did not resume from a checkpoint: $(cat resume.log)"

"$python" - <<'PY' || exit 1
import json, math, sys
import pandas as pd
from tensorboard.backend.event_processing import event_accumulator

def check(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    want = {}
    records = [json.loads(line) for line in open(run_dir + "/metrics.jsonl")]
    for r in records:
        if r["kind"] == "train":
            for k in ("loss", "error", "lr", "img_per_s"):
                want.setdefault("train/" + k, []).append((r["iter"], r[k]))
        elif r["kind"] == "eval":
            for k in ("loss", "error"):
                want.setdefault(r["split"] + "/" + k, []).append((r["iter"], r[k]))
        elif r["kind"] == "probe":
            for layer in r["layers"]:
                if r["name"] == "grad_norms":
                    want.setdefault("grad_norms/weight/" + layer["name"], []).append((r["iter"], layer["weight_grad_norm"]))
                    want.setdefault("grad_norms/input/" + layer["name"], []).append((r["iter"], layer["input_grad_norm"]))
                else:
                    want.setdefault("grad_snr/" + layer["name"], []).append((r["iter"], layer["snr"]))
    if set(got) != set(want):
        sys.exit(f"FAIL: {run_dir}: tags {sorted(set(got) ^ set(want))[:5]} differ between TensorBoard and metrics.jsonl")
    count = 0
    for tag, values in want.items():
        if len(got[tag]) != len(values):
            sys.exit(f"FAIL: {run_dir}: {tag}: {len(got[tag])} points in TensorBoard, {len(values)} in metrics.jsonl")
        for (gs, gv), (ws, wv) in zip(got[tag], values):
            if gs != ws or not math.isclose(gv, wv, rel_tol=1e-6, abs_tol=1e-6):
                sys.exit(f"FAIL: {run_dir}: {tag}: TensorBoard has ({gs}, {gv}), metrics.jsonl ({ws}, {wv})")
            count += 1
    steps = [s for s, _ in got["train/loss"]]
    if len(steps) != len(set(steps)) or steps != sorted(steps):
        sys.exit(f"FAIL: {run_dir}: train/loss steps repeat or go back: {steps}")
    if not any(t.startswith("grad_snr/") for t in got) or "test/error" not in got or "val/error" not in got:
        sys.exit(f"FAIL: {run_dir}: expected probe, val and test curves, got {sorted(got)[:8]}")
    # pandas: one call per file, as the README says.
    frame = pd.read_json(run_dir + "/metrics.jsonl", lines=True)
    if len(frame) != len(records) or not {"kind", "iter", "loss", "error"} <= set(frame.columns):
        sys.exit(f"FAIL: {run_dir}: pandas read {len(frame)} rows, columns {list(frame.columns)[:8]}")
    return count

total = sum(check(d) for d in ("tb/resnet8", "killed/resnet8"))
# The killed and resumed run's curves equal the uninterrupted one's (img_per_s aside).
def curves(d):
    acc = event_accumulator.EventAccumulator(d, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"] if t != "train/img_per_s"}
if curves("tb/resnet8") != curves("killed/resnet8"):
    sys.exit("FAIL: the resumed run's TensorBoard curves differ from the uninterrupted run's")
runs = pd.json_normalize(json.load(open("tb/results.json"))["runs"])
if len(runs) != 1 or "final.train_error" not in runs.columns:
    sys.exit(f"FAIL: results.json as a frame: {len(runs)} rows, columns {list(runs.columns)[:10]}")
print(f"{total} scalars matched metrics.jsonl in 2 runs; resumed curves equal; pandas read both files")
PY
echo "1 passed, 0 failed"
