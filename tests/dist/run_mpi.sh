#!/bin/sh
# Usage: run_mpi.sh NP PROGRAM [ARGS...]
# Runs PROGRAM on NP ranks through mpirun; exit 77 (meson's "skipped") when
# there is no mpirun. Open MPI refuses root and more ranks than cores unless
# told; other MPIs do not know those flags.
np=$1
shift
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  exec mpirun --allow-run-as-root --oversubscribe -np "$np" "$@"
fi
exec mpirun -np "$np" "$@"
