"""The profiler and memory statistics from Python: the trace is valid
trace-event JSON (parsed with the json module) with the expected events,
properly nested per thread, and FLOP counts that match the layer shapes;
memory figures follow the tensors' sizes; misuse raises."""
import json
import os

import pytest

import libnn
import libnn.functional as F
import libnn.profiler as profiler
from libnn import nn, optim


def _net():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 14 * 14, 32), nn.ReLU(), nn.Linear(32, 10))


def test_trace_parses_and_names_the_events(tmp_path):
    libnn.manual_seed(0)
    net = _net()
    opt = optim.Adam(net.parameters(), lr=1e-3)
    x = libnn.randn(16, 1, 28, 28)
    y = libnn.tensor([i % 10 for i in range(16)], dtype=libnn.int64)
    steps = 3
    path = str(tmp_path / 'trace.json')
    with profiler.profile(trace=path, memory=True) as prof:
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    assert not profiler.running()
    with open(path) as f:
        doc = json.load(f)
    events = doc['traceEvents']
    spans = [e for e in events if e['ph'] == 'X']
    names = {e['name'] for e in spans}
    for want in ('nn_conv2d', 'nn_linear', 'nn_cross_entropy', 'nn_optim_step', 'nn_backward',
                 'Sequential#1', 'Linear#1', 'Linear#2'):
        assert want in names, (want, sorted(names))
    assert {e['cat'] for e in spans} >= {'op', 'backward', 'optimizer', 'module'}
    for e in spans:
        assert e['dur'] >= 0 and e['ts'] >= 0 and isinstance(e['tid'], int)
    # FLOPs of the first Linear's forward: 2 * batch * in * out per step
    lin = [e for e in spans if e['name'] == 'nn_linear' and e['cat'] == 'op']
    assert len(lin) == 2 * steps
    assert sorted(e['args']['flops'] for e in lin)[-steps:] == [2.0 * 16 * 8 * 14 * 14 * 32] * steps
    # complete events of one thread nest (children inside parents)
    by_tid = {}
    for e in spans:
        by_tid.setdefault(e['tid'], []).append(e)
    for evs in by_tid.values():
        evs.sort(key=lambda e: (e['ts'], -e['dur']))
        stack = []
        for e in evs:
            while stack and e['ts'] >= stack[-1]['ts'] + stack[-1]['dur'] - 1e-3:
                stack.pop()
            if stack:
                assert e['ts'] + e['dur'] <= stack[-1]['ts'] + stack[-1]['dur'] + 2e-3
            stack.append(e)
    assert any(e['ph'] == 'M' and e['name'] == 'thread_name' for e in events)
    counters = [e for e in events if e['ph'] == 'C']
    assert len(counters) >= 2 * steps  # after each zero_grad and step
    assert set(counters[0]['args']) == set(profiler.memory_categories())
    text = prof.report()
    assert 'Top ops by self time' in text and 'nn_conv2d' in text
    assert prof.total_seconds() > 0


def test_profiler_does_not_change_results():
    def run(profiled):
        libnn.manual_seed(3)
        net = _net()
        opt = optim.SGD(net.parameters(), lr=0.1)
        x = libnn.randn(8, 1, 28, 28)
        y = libnn.tensor([i % 10 for i in range(8)], dtype=libnn.int64)
        if profiled:
            profiler.start()
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        if profiled:
            profiler.stop()
        return [p.tolist() for p in net.parameters()]
    assert run(False) == run(True)


def test_memory_stats_follow_the_tensors():
    before = profiler.memory_stats()
    lin = nn.Linear(100, 50)
    after = profiler.memory_stats()
    grew = after['current']['parameters'] - before['current']['parameters']
    assert grew == (100 * 50 + 50) * 4
    profiler.reset_peak_memory_stats()
    st = profiler.memory_stats()
    assert st['peak'] == st['current'] and st['peak_total'] == st['current_total']
    assert st['current_total'] == sum(st['current'].values())
    del lin


def test_misuse_raises(tmp_path):
    with pytest.raises(libnn.LibnnError):
        profiler.stop()
    profiler.start()
    try:
        with pytest.raises(libnn.LibnnError):
            profiler.start()
        with pytest.raises(libnn.LibnnError):
            profiler.export_chrome_trace(str(tmp_path / 't.json'))
    finally:
        profiler.stop()
    with pytest.raises(libnn.LibnnError):
        profiler.export_chrome_trace(str(tmp_path / 'no-such-dir' / 't.json'))
    r, w = os.pipe()
    try:
        profiler.write_report(w)
        os.close(w)
        w = None
        assert b'libnn profile' in os.read(r, 1 << 16)
    finally:
        if w is not None:
            os.close(w)
        os.close(r)
