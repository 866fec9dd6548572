#!/bin/sh
# Usage: bench_dist.sh BENCH_DIST [ARGS...]
# The data-parallel CNN benchmark (bench_dist.c) on 1 rank, then on 2, each
# through mpirun, then the 2-rank speed-up. Exit 77 (meson's "skipped")
# without mpirun. Flags for a small shared host: more ranks than free cores
# (--oversubscribe), no pinning (--bind-to none: Open MPI's default for
# np <= 2 pins each rank to one core, which serialises a rank's threads and
# stops the kernel from moving a rank off a busy core), and yield instead
# of busy-polling while a rank waits (mpi_yield_when_idle). libnn runs
# --threads threads per rank (1 unless given). Override the MPI settings
# with BENCH_DIST_MPIRUN_FLAGS / OMPI_MCA_* in the environment.
prog=$1
shift
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
flags=${BENCH_DIST_MPIRUN_FLAGS-"--oversubscribe --bind-to none"}
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  flags="--allow-run-as-root $flags"
  export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle-1}
  export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism-none}
else
  flags=""
fi
echo "bench_dist: load before: $(cat /proc/loadavg 2>/dev/null)"
# shellcheck disable=SC2086 # flags is a word list
out1=$(mpirun $flags -np 1 "$prog" "$@") || { echo "$out1"; exit 1; }
echo "$out1"
# shellcheck disable=SC2086
out2=$(mpirun $flags -np 2 "$prog" "$@") || { echo "$out2"; exit 1; }
echo "$out2"
echo "bench_dist: load after: $(cat /proc/loadavg 2>/dev/null)"
printf '%s\n%s\n' "$out1" "$out2" | awk '
  $1 == "BENCH" && $2 == "dist_cnn_np1_img_per_s" { one = $4; t = $3 }
  $1 == "BENCH" && $2 == "dist_cnn_np2_img_per_s" { two = $4 }
  $1 == "BENCH" && $2 == "dist_cnn_np2_overlap_img_per_s" { ov = $4 }
  END {
    if (one > 0 && two > 0) printf "BENCH dist_cnn_np2_vs_np1 %d %.4g x\n", t, two / one
    if (one > 0 && ov > 0) printf "BENCH dist_cnn_np2_overlap_vs_np1 %d %.4g x\n", t, ov / one
  }'
