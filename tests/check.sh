# The shell tests' assertion and shared fixtures, sourced by test_cli.sh, test_dist.sh, test_slurm.sh and
# test_cuda_build.sh.
# check NAME EXPECTED_RC PATTERN -- command...: runs the command; it passes when the exit code is EXPECTED_RC
# ("nonzero": any but 0) and its output (stdout and stderr) matches the extended regex PATTERN. Where
# RESLAB_CHECK_TIMES names a file, each check appends "SECONDS NAME" to it (to find where a script's time goes).
failures=0
passes=0

check() {
  local name=$1 want_rc=$2 pattern=$3 out rc ok_rc
  shift 4
  local start=$EPOCHREALTIME
  out=$("$@" 2>&1)
  rc=$?
  [[ -z ${RESLAB_CHECK_TIMES:-} ]] ||
    awk -v end="$EPOCHREALTIME" -v start="$start" -v name="$name" 'BEGIN { printf "%.2f %s\n", end - start, name }' \
      >>"$RESLAB_CHECK_TIMES"
  if [[ $want_rc == nonzero ]]; then
    [[ $rc -ne 0 ]] && ok_rc=1 || ok_rc=0
  else
    [[ $rc -eq $want_rc ]] && ok_rc=1 || ok_rc=0
  fi
  if [[ $ok_rc -eq 1 ]] && grep -qE -- "$pattern" <<<"$out"; then
    passes=$((passes + 1))
  else
    failures=$((failures + 1))
    echo "FAIL: $name (rc=$rc, wanted $want_rc, pattern '$pattern')"
    echo "$out" | tail -20
  fi
}

# interrupt_after_first_record DIR command...: starts the command (a training run writing into DIR), presses
# Ctrl-C (SIGINT) once DIR/metrics.jsonl holds a record or 30 s have passed, and returns the command's exit code.
interrupt_after_first_record() {
  local dir=$1 pid
  shift
  "$@" &
  pid=$!
  for _ in $(seq 1 300); do
    [[ -s "$dir/metrics.jsonl" ]] && break
    sleep 0.1
  done
  kill -INT "$pid"
  wait "$pid"
}

# A 24x20 PPM image of random pixels at PATH.
ppm() { { printf 'P6\n%d %d\n255\n' 24 20; head -c $((24 * 20 * 3)) /dev/urandom; } >"$1"; }

# An image folder at DIR: train/ and val/, classes CLASS... (default cat and dog), four PPM images each.
make_image_folder() {
  local root=$1 split c i
  shift
  local classes=("$@")
  ((${#classes[@]})) || classes=(cat dog)
  for split in train val; do
    for c in "${classes[@]}"; do
      mkdir -p "$root/$split/$c"
      for i in 1 2 3 4; do ppm "$root/$split/$c/$i.ppm"; done
    done
  done
}
