"""Prometheus metrics from Python: the text, the file, the endpoint during
libnn.fit, checked by a small exposition-format parser."""
import math
import re
import threading
import urllib.request

import pytest

import libnn
from libnn import nn, optim
from libnn.monitor import Monitor
from conftest import needs

pytestmark = needs('nn_monitor_new')

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$')


def parse(text):
    """{name: value} of a valid exposition text (asserts validity)."""
    types, out = {}, {}
    assert text.endswith('\n')
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split(' ', 3)
            assert kind in ('counter', 'gauge', 'histogram', 'summary', 'untyped')
            assert name not in types
            types[name] = kind
        elif line.startswith('#') or not line:
            continue
        else:
            m = SAMPLE.match(line)
            assert m, line
            assert m.group(1) in types, 'sample before TYPE: ' + line
            v = m.group(3)
            out[m.group(1)] = float(v.replace('+Inf', 'inf').replace('-Inf', '-inf'))
    return out


def test_text_labels_and_gauges():
    with Monitor(labels={'job': 'a"b\\c\nd'}) as mon:
        mon.set_gauge('my_value', 2.5, help='mine')
        mon.record_step(0.5, 10, 0.5)
        t = mon.text()
        assert 'my_value{job="a\\"b\\\\c\\nd"} 2.5\n' in t
        v = parse(t)
        assert v['nn_train_samples_per_second'] == 20
        with pytest.raises(ValueError):
            mon.set_gauge('bad name', 1)


def test_file_and_endpoint_during_fit(tmp_path):
    libnn.manual_seed(1)
    x = libnn.randn(200, 4)
    y = (x[:, 0] > 0).long() if hasattr(x[:, 0] > 0, 'long') else None
    if y is None:
        pytest.skip('no comparison to labels in this build')
    path = str(tmp_path / 'm.prom')
    try:
        mon = Monitor(path, port=0)
    except libnn.UnsupportedError:
        mon = Monitor(path)
    with mon:
        port = mon.port if mon._h and _serving(mon) else None
        net = nn.Sequential(nn.Linear(4, 2))
        opt = optim.SGD(net.parameters(), lr=0.1)
        loader = libnn.DataLoader(libnn.TensorDataset(x, y), batch_size=20, shuffle=True)
        scraped = []

        def on_epoch(*args):
            if port:
                with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port) as r:
                    scraped.append(r.read().decode())
            return True
        with mon.attached():
            libnn.fit(net, opt, loader, epochs=2, on_epoch=on_epoch)
        v = parse(open(path).read())
        assert v['nn_train_steps_total'] == 20
        assert v['nn_train_samples_total'] == 400
        assert v['nn_epoch'] == 1
        for s in scraped:
            assert parse(s)['nn_train_steps_total'] >= 10


def _serving(mon):
    try:
        return mon.port > 0
    except libnn.LibnnError:
        return False
