/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_DIST_H
#define NN_PART_DIST_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

/* ====================================================================== */
/*  Distributed data-parallel training (MPI)                              */
/* ====================================================================== */
/*
 * Data parallelism like PyTorch's DistributedDataParallel, explicit and
 * minimal: every process (rank) holds a full copy of the model, trains on
 * its own shard of the data, and averages gradients with the others before
 * each optimizer step, so all copies stay identical.
 *
 *     nn_dist_init(&argc, &argv);                    // world of 1 without mpirun
 *     nn_module *net = ...;
 *     nn_dist_broadcast_module(net, 0);              // everyone starts as rank 0
 *     nn_dataset *mine = nn_dist_shard_dataset(train, true);
 *     nn_loader *l = nn_loader_new(mine, global_batch / nn_dist_size(), true, seed);
 *     while (nn_loader_next(l, &x, &y)) {
 *         nn_optim_zero_grad(opt);
 *         nn_backward(nn_cross_entropy(nn_module_forward(net, x), y));
 *         nn_dist_allreduce_grads(net);              // mean over ranks
 *         nn_optim_step(opt);
 *     }
 *     nn_dist_finalize();
 *
 * Run it with `mpirun -np 2 ./prog`; run alone it is a world of size 1.
 * Open MPI busy-polls while a rank waits in a collective: on a machine with
 * fewer free cores than ranks, set OMPI_MCA_mpi_yield_when_idle=1 (measured
 * 8x faster on a loaded 2-core host).
 *
 * The communication engine is MPI (MPI_Init_thread with
 * MPI_THREAD_FUNNELED). Built without MPI (meson option mpi), every
 * function below still exists and behaves as a world of size 1 (rank 0):
 * the ABI does not depend on the build; nn_dist_available tells them apart.
 * libnn communicates on its own duplicate of MPI_COMM_WORLD, with MPI
 * errors returned (never aborting): a failure is NN_ERR_IO with MPI's
 * message.
 *
 * Collective calls (broadcast, allreduce, barrier) must be made by every
 * rank, in the same order, on modules of the same layout (the same
 * parameter and buffer shapes and dtypes; checked, NN_ERR_STATE otherwise).
 * Every rank must run the same number of steps: shard with even = true and
 * give every rank the same batch size.
 *
 * Threads: call the nn_dist_* functions from one thread only, the one that
 * called nn_dist_init (MPI_THREAD_FUNNELED); libnn's other threads (loader
 * prefetch, BLIS) never communicate.
 */

/* Whether this build communicates through MPI (false: always a world of 1). */
NN_API bool nn_dist_available(void);
/* Join the world: MPI_Init_thread(argc, argv) unless MPI is already
 * initialised (then libnn uses it and leaves finalising to its owner).
 * argc/argv may be NULL. Calling it again is a no-op; after
 * nn_dist_finalize it is NN_ERR_STATE (MPI cannot restart). */
NN_API nn_status nn_dist_init(int *argc, char ***argv);
/* Release libnn's communicator and, if nn_dist_init initialised MPI, call
 * MPI_Finalize. A no-op before nn_dist_init or when called twice. */
NN_API nn_status nn_dist_finalize(void);
/* This process's rank in 0..size-1 (0 before init and after finalize). */
NN_API int nn_dist_rank(void);
/* Number of processes in the world (1 before init and after finalize). */
NN_API int nn_dist_size(void);
/* Wait until every rank has called it (a collective). */
NN_API nn_status nn_dist_barrier(void);

/* Copy every parameter and buffer of m from rank root to all ranks (one
 * broadcast of a packed buffer), so every rank starts identical. A
 * collective. NULL m: NN_ERR_NULL; root outside 0..size-1: NN_ERR_RANGE;
 * modules of different layouts across ranks: NN_ERR_STATE, nothing changed. */
NN_API nn_status nn_dist_broadcast_module(nn_module *m, int root);
/* Replace the gradient of every parameter of m that requires grad with the
 * mean over ranks (sum / size), in one allreduce of a packed buffer. A rank
 * without a gradient for a parameter contributes zeros; a parameter that
 * has a gradient on some rank gets one on every rank, one with none on any
 * rank keeps none everywhere (the optimizer then skips it on all ranks).
 * A collective; errors as nn_dist_broadcast_module. */
NN_API nn_status nn_dist_allreduce_grads(nn_module *m);
/* Sum v[0..n) over all ranks, in place (for metrics: losses times counts,
 * correct predictions; divide by nn_dist_size for a mean). A collective;
 * n 0 is a no-op, n < 0 is NN_ERR_INVALID, v NULL with n > 0 NN_ERR_NULL. */
NN_API nn_status nn_dist_allreduce_scalar(double *v, int n);

/* The sample indices that rank `rank` of `size` takes from a dataset of n:
 * rank, rank + size, rank + 2 size, ... (PyTorch's DistributedSampler
 * interleaving, so the k-th batches of all ranks together are the k-th
 * global batch). Shards are disjoint and cover 0..n-1; with even, every
 * rank takes floor(n / size) (the last n % size samples are dropped) so all
 * ranks run the same number of steps. Writes min(count, cap) indices into
 * out (out may be NULL to ask the count) and returns count, or -1 on error
 * (n < 0, size < 1, rank outside 0..size-1, cap < 0, NULL out with cap > 0). */
NN_API int64_t nn_dist_shard_indices(int64_t n, int rank, int size, bool even, int64_t *out,
                                     int64_t cap);
/* This rank's shard of ds (nn_dist_shard_indices for nn_dist_rank and
 * nn_dist_size, through nn_dataset_subset: a view sharing the samples).
 * Returns a new reference (free with nn_dataset_free), NULL on error. */
NN_API nn_dataset *nn_dist_shard_dataset(nn_dataset *ds, bool even);

#endif
