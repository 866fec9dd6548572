"""Distributed data-parallel training over MPI (torch.distributed-like).

    import libnn.dist as dist
    dist.init()                          # a world of 1 without mpirun
    dist.broadcast_module(net, 0)
    loader = DataLoader(dist.shard_dataset(train), batch_size // dist.size(), shuffle=True)
    for x, y in loader:
        opt.zero_grad(); F.cross_entropy(net(x), y).backward()
        dist.allreduce_grads(net); opt.step()
    dist.finalize()

Built without MPI every call behaves as a world of size 1 (available()
tells). Call these from one thread only, the one that called init().
"""
from ctypes import c_double, c_int64

from ._lib import check, lib, raise_last

__all__ = ['available', 'init', 'finalize', 'rank', 'size', 'barrier', 'broadcast_module',
           'allreduce_grads', 'allreduce', 'shard_indices', 'shard_dataset', 'set_overlap',
           'set_bucket_bytes', 'bucket_bytes', 'num_buckets']


def available():
    """Whether this build communicates through MPI."""
    return bool(lib.nn_dist_available())


def init():
    """Join the world (MPI_Init_thread unless MPI is initialised already)."""
    check(lib.nn_dist_init(None, None))


def finalize():
    check(lib.nn_dist_finalize())


def rank():
    return lib.nn_dist_rank()


def size():
    return lib.nn_dist_size()


def barrier():
    check(lib.nn_dist_barrier())


def broadcast_module(module, root=0):
    """Copy every parameter and buffer from rank root to all ranks."""
    check(lib.nn_dist_broadcast_module(module._handle(), int(root)))


def allreduce_grads(module):
    """Replace every gradient of module with its mean over ranks."""
    check(lib.nn_dist_allreduce_grads(module._handle()))


def set_overlap(module, on=True):
    """Overlap allreduce_grads(module) with backward (PyTorch DDP's
    buckets): each bucket's allreduce starts during backward as soon as its
    gradients are final; allreduce_grads then only waits. A collective."""
    check(lib.nn_dist_set_overlap(module._handle(), bool(on)))


def set_bucket_bytes(nbytes):
    """Target bucket size in bytes for set_overlap (default 25 MiB)."""
    check(lib.nn_dist_set_bucket_bytes(int(nbytes)))


def bucket_bytes():
    return lib.nn_dist_bucket_bytes()


def num_buckets():
    """Buckets of the module with overlap on (0 when off)."""
    return lib.nn_dist_num_buckets()


def allreduce(values):
    """Sum a list of numbers over all ranks; returns the summed list."""
    values = [float(v) for v in values]
    buf = (c_double * max(len(values), 1))(*values)
    check(lib.nn_dist_allreduce_scalar(buf, len(values)))
    return list(buf[:len(values)])


def shard_indices(n, rank_=None, size_=None, even=True):
    """The sample indices rank takes from n samples (interleaved)."""
    r = rank() if rank_ is None else int(rank_)
    s = size() if size_ is None else int(size_)
    count = lib.nn_dist_shard_indices(int(n), r, s, bool(even), None, 0)
    if count < 0:
        raise_last()
    out = (c_int64 * max(count, 1))()
    lib.nn_dist_shard_indices(int(n), r, s, bool(even), out, count)
    return list(out[:count])


def shard_dataset(dataset, even=True):
    """This rank's shard of dataset (a view sharing the samples)."""
    from .data import Dataset
    return Dataset(lib.nn_dist_shard_dataset(dataset._handle(), bool(even)))


def set_timeout(seconds):
    """Deadline of each collective in seconds (0: wait forever): a rank that
    failed, died or stalled then makes the others raise TimeoutError."""
    check(lib.nn_dist_set_timeout(float(seconds)))


def timeout():
    """The collective deadline in seconds."""
    return lib.nn_dist_timeout()


def abort(code=1, why=None):
    """End every rank of the job, printing why and naming this rank (does
    not return inside a job; raises StateError outside one)."""
    check(lib.nn_dist_abort(int(code), None if why is None else str(why).encode()))
