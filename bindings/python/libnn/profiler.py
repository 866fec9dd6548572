"""The profiler and libnn's memory statistics (one profiler per process).

    import libnn.profiler as profiler
    with profiler.profile(trace='step.json', memory=True) as prof:
        opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()
    print(prof.report())                 # top ops by self time, modules, memory
    profiler.memory_stats()['peak']['activations and graph']

Off by default; while a session runs every op forward, backward op,
optimizer step, module forward and loader batch is recorded, from every
thread. The trace opens in Perfetto (ui.perfetto.dev) or chrome://tracing.
"""
import math
from ctypes import Structure, addressof, c_uint32, c_uint64, c_void_p, sizeof

from . import _decls
from ._lib import check, check_ptr, lib, text

__all__ = ['start', 'stop', 'running', 'report', 'write_report', 'export_chrome_trace',
           'total_seconds', 'profile', 'memory_stats', 'reset_peak_memory_stats',
           'memory_categories']

_SLOTS = _decls.DEFINES['NN_MEM_CATEGORY_SLOTS']
_MEMORY = 1  # NN_PROFILER_MEMORY


class _MemoryStats(Structure):
    # nn_memory_stats_t (include/nn.h)
    _fields_ = [('size', c_uint32), ('ncategories', c_uint32),
                ('current_total', c_uint64), ('peak_total', c_uint64),
                ('current', c_uint64 * _SLOTS), ('peak', c_uint64 * _SLOTS)]


def memory_categories():
    """The category names, in nn_mem_category order."""
    n = dict(_decls.ENUMS['nn_mem_category'])['NN_MEM_CATEGORIES']
    return [text(lib.nn_memory_category_name(i)) for i in range(n)]


def memory_stats():
    """Bytes libnn holds now and at its peak: {'current': {category: bytes},
    'peak': {...}, 'current_total': n, 'peak_total': n}."""
    st = _MemoryStats()
    st.size = sizeof(st)
    check(lib.nn_memory_stats(addressof(st)))
    names = [text(lib.nn_memory_category_name(i)) for i in range(st.ncategories)]
    return {'current': {n: st.current[i] for i, n in enumerate(names)},
            'peak': {n: st.peak[i] for i, n in enumerate(names)},
            'current_total': st.current_total, 'peak_total': st.peak_total}


def reset_peak_memory_stats():
    """Make every peak equal to the current figure."""
    check(lib.nn_memory_reset_peak())


def start(memory=False):
    """Start a session (dropping the previous one's records); memory=True
    also samples the memory figures into the trace after each optimizer step."""
    check(lib.nn_profiler_start(_MEMORY if memory else 0))


def stop():
    check(lib.nn_profiler_stop())


def running():
    return bool(lib.nn_profiler_running())


def report():
    """The current or last session's report as text."""
    p = c_void_p(check_ptr(lib.nn_profiler_report()))
    try:
        from ctypes import string_at
        return string_at(p.value).decode('utf-8', 'replace')
    finally:
        lib.nn_free(p.value)


def write_report(fd=1):
    """Write the report to a file descriptor (1: stdout)."""
    check(lib.nn_profiler_write_report(int(fd)))


def export_chrome_trace(path):
    """Write the stopped session as Chrome trace-event JSON."""
    check(lib.nn_profiler_write_trace(str(path).encode()))


def total_seconds():
    """Sum of the self times on the calling threads (None without a session)."""
    v = lib.nn_profiler_total_seconds()
    return None if math.isnan(v) else v


class profile:
    """A session as a context manager; writes `trace` (a path) on exit."""

    def __init__(self, trace=None, memory=False):
        self.trace, self.memory = trace, memory

    def __enter__(self):
        start(self.memory)
        return self

    def __exit__(self, *exc):
        stop()
        if self.trace is not None:
            export_chrome_trace(self.trace)
        return False

    def report(self):
        return report()

    def total_seconds(self):
        return total_seconds()
