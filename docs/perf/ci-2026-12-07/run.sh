#!/usr/bin/env bash
# .ci/run's steps one at a time with their elapsed seconds (phases.txt: cumulative), on a clean clone of main at
# f67fe89 in /tmp/ci (git clone /work/main /tmp/ci), 2-core AVX2 EPYC, 2026-12-07. Logs went to /tmp/ci-*.log.
cd /tmp/ci
s=$(date +%s)
t() { echo "$(( $(date +%s) - s )) s: $*"; }
set -o pipefail
scripts/install-deps > /tmp/ci-deps.log 2>&1; t deps
scripts/build > /tmp/ci-build.log 2>&1; t build rc=$?
(cd build && ctest --output-on-failure --timeout 600) > /tmp/ci-test.log 2>&1; t test rc=$?
scripts/test-sanitize > /tmp/ci-san.log 2>&1; t sanitize rc=$?
scripts/build-cuda > /tmp/ci-cuda.log 2>&1; t cuda rc=$?
