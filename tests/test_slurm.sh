#!/usr/bin/env bash
# reslab slurm against a real Slurm: munged, slurmctld and slurmd started here (one node, this machine, on
# loopback, in a temporary folder), an experiment's array run to completion, and `collect` giving the same
# results.json as running the experiment directly; then a grid point trained by two srun tasks (data-parallel).
# Exits 77 (CTest: skipped) with the reason when the daemons cannot start here.
# Usage: test_slurm.sh path/to/reslab
set -uo pipefail
reslab=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
daemons=()
cleanup() {
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${daemons[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
skip() { echo "SKIPPED: $*"; exit 77; }

for tool in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/install-deps installs slurmctld, slurmd, slurm-client and munge)"
done
[[ $(id -u) -eq 0 ]] || skip "starting slurmd needs root (this runs as $(id -un))"

# munge, with a key and socket of its own.
mkdir -p "$work/munge" "$work/state" "$work/spool" "$work/log"
chmod 755 "$work/munge"
head -c 1024 /dev/urandom >"$work/munge/munge.key"
chmod 600 "$work/munge/munge.key"
munged --force --socket="$work/munge/socket" --key-file="$work/munge/munge.key" --log-file="$work/log/munged.log" \
  --pid-file="$work/munge/munged.pid" --seed-file="$work/munge/seed" || skip "munged did not start ($(tail -2 "$work/log/munged.log" 2>/dev/null))"
daemons+=("$(cat "$work/munge/munged.pid")")

node=$(hostname -s)
port=$((12000 + RANDOM % 7000))  # below reslab's Slurm ports (20000+) and the ephemeral ones
export SLURM_CONF=$work/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=reslabtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -D -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/log/slurmd.out" 2>&1 &
daemons+=($!)
up=0
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then up=1; break; fi
  sleep 0.5
done
[[ $up -eq 1 ]] || skip "the Slurm daemons did not come up: $(tail -3 "$work/log/slurmctld.log" "$work/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
echo "Slurm up: node $node, slurmctld on 127.0.0.1:$port"

source "$(dirname "$0")/check.sh"
# Waits (up to 300 s) until the jobs listed in DIR/slurm/jobs have left the queue.
wait_jobs() {
  local jobs
  jobs=$(tr ' ' ',' <"$1/slurm/jobs")
  for _ in $(seq 600); do
    [[ -z $(squeue -h -j "$jobs" 2>/dev/null) ]] && return 0
    sleep 0.5
  done
  echo "jobs $jobs still queued after 300 s"; squeue; return 1
}
same_results() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, os, sys
timing = {"seconds", "train_seconds", "eval_seconds", "img_per_s"}
def strip(v):
    if isinstance(v, dict): return {k: strip(x) for k, x in v.items() if k not in timing}
    if isinstance(v, list): return [strip(x) for x in v]
    return v
a, b = (strip(json.load(open(os.path.join(d, "results.json")))) for d in sys.argv[1:])
runs = [r["run"] for r in a["runs"]]
records = lambda d, r: [strip(json.loads(l)) for l in open(os.path.join(d, r, "metrics.jsonl"))]
same = a == b and all(records(sys.argv[1], r) == records(sys.argv[2], r) for r in runs)
print(f"same ({len(runs)} runs)" if same else "differ:\n" + json.dumps(a)[:800] + "\n" + json.dumps(b)[:800])
PY
}

cat >"$work/exp.json" <<'JSON'
{"name": "slurm_test", "grid": {"depth": [8, 14], "residual": [false, true]},
 "data": {"train_size": 512, "test_size": 200}, "optim": {"iterations": 12, "batch": 64},
 "train": {"log_every": 4}, "threads": 1}
JSON
cd "$work"
check "slurm writes and submits" 0 "array job [0-9]+ \(4 tasks\), collect job [0-9]+" -- \
  "$reslab" slurm exp.json --out "$work/array" --concurrency 2 --cpus 1 --time 00:10:00 --submit
check "array script" 0 "#SBATCH --array=0-3%2" -- cat "$work/array/slurm/array.sbatch"
check "srun gets the CPUs" 0 "export SRUN_CPUS_PER_TASK=\\\$SLURM_CPUS_PER_TASK" -- cat "$work/array/slurm/array.sbatch"
check "jobs finish" 0 "" -- wait_jobs "$work/array"
check "collect job ran" 0 "Results: .*results.json \(4 of 4 runs\)" -- bash -c "cat '$work'/array/slurm/logs/collect_*.out"
check "one log per task" 0 "^4$" -- bash -c "ls '$work'/array/slurm/logs | grep -vc collect"
check "direct run" 0 "Results:" -- "$reslab" run exp.json --out "$work/direct" --no-plot
check "same results as directly" 0 "^same \(4 runs\)" -- same_results "$work/array" "$work/direct"

# Two srun tasks per grid point: one data-parallel run, Slurm's variables mapped to ranks.
cat >"$work/one.json" <<'JSON'
{"name": "slurm_ddp", "grid": {"depth": [8]}, "data": {"train_size": 512, "test_size": 200},
 "optim": {"iterations": 8, "batch": 64}, "threads": 1}
JSON
check "two tasks per point" 0 "1 grid points \(2 ranks each\)" -- \
  "$reslab" slurm one.json --out "$work/ddp" --tasks-per-node 2 --cpus 1 --submit
check "ddp jobs finish" 0 "" -- wait_jobs "$work/ddp"
check "ddp over srun" 0 "data-parallel: 2 ranks \(slurm variables\)" -- bash -c "cat '$work'/ddp/slurm/logs/*_0.out"
check "ddp summary" 0 '"world_size": 2' -- cat "$work/ddp/resnet8/summary.json"

# What reslab slurm refuses.
check "own flag after --" nonzero "'--out' after --: reslab slurm sets --out itself" -- \
  "$reslab" slurm exp.json -- --out x
check "bad override" nonzero "the grid could not be listed" -- "$reslab" slurm exp.json -- --depths 9
echo '{"name": "bad", "grid": {"depth": [8]}, "optim": {"itres": 1}}' >"$work/bad.json"
check "bad experiment" nonzero "bad.json: key 'optim.itres' is not a known key" -- "$reslab" slurm bad.json

echo "test_slurm: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
