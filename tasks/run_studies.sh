#!/usr/bin/env bash
# Run a queue of long study commands in the background, one lane per core:
#
#   nohup tasks/run_studies.sh studies/queue/lane_a.txt > runs/lane_a.log 2>&1 &
#
# Each non-comment line of the queue file is one command, run in order with one torch thread.
# The file is read again before each command, so lines appended while the lane runs are picked up.
# Study commands skip finished runs and resume a killed one from its checkpoint, so rerunning a
# lane after a reboot or a killed session continues where it stopped.
#
# LGFN_CODE=DIR runs the library from DIR (e.g. a `git worktree` of a fixed commit) instead of
# this checkout, so that editing the checkout cannot change, or break, the runs in progress;
# outputs and configs stay relative to this checkout.
set -u
cd "$(dirname "$0")/.."
queue="$1"
shared="$(cd .. && pwd)/shared/data"
export LGFN_FRAGMENTS_72="${LGFN_FRAGMENTS_72:-$shared/fragments/fragments_72.json}"
export LGFN_SEH_PROXY="${LGFN_SEH_PROXY:-$shared/seh_proxy/best_params.pkl.gz}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PATH="$PWD/.venv/bin:$PATH"
if [ -n "${LGFN_CODE:-}" ]; then export PYTHONPATH="$LGFN_CODE${PYTHONPATH:+:$PYTHONPATH}"; fi
i=0
while true; do
  line="$(grep -v '^\s*#' "$queue" | grep -v '^\s*$' | sed -n "$((i + 1))p")"
  [ -z "$line" ] && break
  echo "== $(date -u +%FT%TZ) start: $line"
  bash -c "$line" && status=0 || status=$?
  echo "== $(date -u +%FT%TZ) exit $status: $line"
  i=$((i + 1))
done
