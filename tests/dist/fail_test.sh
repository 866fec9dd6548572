#!/bin/sh
# Multi-node failures end within a bound, and training resumes exactly.
# Usage: fail_test.sh RUN_MPI DIST_FAIL WORKDIR. Each mpirun is bounded by
# timeout(1): exit 124 (a hang) fails the test.
run=$1 work=$3
prog=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
bound=40
mkdir -p "$work" && cd "$work" || exit 1
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
fails=0
expect_stop() { # MODE MESSAGE
  t0=$(date +%s)
  timeout $bound sh "$run" 2 "$prog" "$1" 2 >out.txt 2>err.txt
  rc=$? t=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || ! grep -q "$2" err.txt; then
    echo "FAIL: $1: exit $rc after ${t}s, stderr:"; cat err.txt; fails=1
  else
    echo "ok: $1: every rank stopped after ${t}s (bound ${bound}s): $(grep -m1 "$2" err.txt)"
  fi
}
expect_stop stall "rank 0 of 2: MPI_Iallreduce did not complete within"
expect_stop abort "rank 1 of 2 failed: injected failure"
expect_stop kill "rank 1\|signal 9\|did not complete within"
# The same with the allreduce overlapped with backward (buckets in flight).
expect_stop overlap_stall "rank 0 of 2: MPI_Iallreduce did not complete within"
expect_stop overlap_kill "rank 1\|signal 9\|did not complete within"

# Kill rank 1 in epoch 2 of 4, restart every rank from the last checkpoint,
# and end with the weights of an uninterrupted run, bit for bit.
rm -f ckpt.nnm full.nnm resumed.nnm
timeout $bound sh "$run" 2 "$prog" train 20 4 ckpt_full.nnm full.nnm >/dev/null 2>err.txt \
  || { echo "FAIL: uninterrupted run"; cat err.txt; exit 1; }
timeout $bound sh "$run" 2 "$prog" train 20 4 ckpt.nnm killed.nnm 2 >/dev/null 2>err.txt
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ -e killed.nnm ]; then
  echo "FAIL: the killed run exited $rc"; cat err.txt; exit 1; fi
timeout $bound sh "$run" 2 "$prog" train 20 4 ckpt.nnm resumed.nnm resume >/dev/null 2>err.txt \
  || { echo "FAIL: resumed run"; cat err.txt; exit 1; }
if cmp -s full.nnm resumed.nnm; then
  echo "ok: killed in epoch 2, resumed from the epoch-2 checkpoint: weights identical"
else
  echo "FAIL: resumed weights differ from the uninterrupted run"; fails=1
fi
exit $fails
