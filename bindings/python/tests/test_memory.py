"""No leaks across many create/free cycles (RSS stays flat)."""
import array
import gc
import os

import libnn
from conftest import needs

PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE


def _cycles(fn, n):
    for _ in range(n):
        fn()
    gc.collect()


def _assert_flat(fn, n=10000, slack=3 << 20):
    _cycles(fn, 1000)                      # warm up allocator and caches
    before = rss_bytes()
    _cycles(fn, n)
    grew = rss_bytes() - before
    assert grew < slack, 'RSS grew by %d KiB over %d cycles' % (grew >> 10, n)


def test_tensor_create_free_cycles():
    # 1 KiB of data per tensor: a leaked tensor per cycle shows as >= 10 MiB.
    data = array.array('f', range(256))
    small = [[1.0, 2.0], [3.0, 4.0]]

    def cycle():
        t = libnn.tensor(data).reshape(16, 16)
        u = t[3:9, ::2].contiguous()
        u[0].tolist()
        libnn.tensor(small).close()
        t.close()
    _assert_flat(cycle)


def test_repr_and_numpy_views_do_not_leak():
    t = libnn.ones(16, 16)

    def cycle():
        repr(t[1:3])
        t.memoryview()
    _assert_flat(cycle, n=10000)


@needs('nn_mul', 'nn_sum', 'nn_add')
def test_autograd_graph_cycles():
    w = libnn.ones(256, requires_grad=True)

    def cycle():
        x = libnn.full((256,), 2.0)
        loss = ((w * x) + x).sum()
        loss.backward()
        w.grad = None
    _assert_flat(cycle)


def test_errors_do_not_leak():
    t = libnn.zeros(64, 64)

    def cycle():
        try:
            t.reshape(3, 3)
        except libnn.ShapeError:
            pass
    _assert_flat(cycle)
