#!/usr/bin/env python3
"""Scrape the metrics endpoint with curl while the Fashion-MNIST example
trains, and check the text and the file it writes with an independent
exposition-format checker. Usage: monitor_scrape.py EXAMPLE_BINARY WORKDIR
Exit 77 (skip) without curl or when the build has no HTTP endpoint."""
import os
import re
import shutil
import subprocess
import sys
import time

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
                    r'(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$')


def check(text):
    """{name: value}; raises on anything the 0.0.4 text format forbids."""
    if not text.endswith('\n'):
        raise ValueError('no final newline')
    types, values = {}, {}
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            parts = line.split(' ')
            if len(parts) != 4 or parts[3] not in ('counter', 'gauge', 'histogram', 'summary',
                                                   'untyped') or parts[2] in types:
                raise ValueError('bad TYPE line: ' + line)
            types[parts[2]] = parts[3]
        elif line.startswith('#') or not line:
            continue
        else:
            m = SAMPLE.match(line)
            if not m or m.group(1) not in types:
                raise ValueError('bad sample: ' + line)
            v = m.group(3)
            values[m.group(1)] = float({'+Inf': 'inf', '-Inf': '-inf'}.get(v, v))
    return values


def main():
    exe, work = sys.argv[1], sys.argv[2]
    curl = shutil.which('curl')
    if not curl:
        print('SKIP: no curl')
        return 77
    os.makedirs(work, exist_ok=True)
    prom = os.path.join(work, 'fashion_mnist_cnn.prom')
    env = dict(os.environ, NN_EXAMPLE_SMOKE='1')
    p = subprocess.Popen([exe, '--threads', '1', '--no-save', '--epochs', '2',
                          '--prometheus', prom, '--metrics-port', '0'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    port, err = None, []
    deadline = time.time() + 60
    while port is None and time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        err.append(line)
        m = re.search(r'metrics: http://127\.0\.0\.1:(\d+)/metrics', line)
        if m:
            port = int(m.group(1))
    if port is None:
        p.kill()
        p.wait()
        text = ''.join(err)
        if 'NN_ERR_UNSUPPORTED' in text or 'no libmicrohttpd' in text:
            print('SKIP: no HTTP endpoint in this build')
            return 77
        print('FAIL: the example printed no port:\n' + text)
        return 1
    scrapes = []
    while p.poll() is None:
        r = subprocess.run([curl, '-sf', '--max-time', '5', 'http://127.0.0.1:%d/metrics' % port],
                           capture_output=True, text=True)
        if r.returncode == 0:
            scrapes.append(r.stdout)
        time.sleep(0.2)
    rest = p.stderr.read()
    if p.wait() != 0:
        print('FAIL: the example failed:\n' + ''.join(err) + rest)
        return 1
    if not scrapes:
        print('FAIL: no scrape succeeded while the example ran')
        return 1
    for s in scrapes:
        v = check(s)
        assert v['nn_predictions_total'] >= 0 and v['nn_process_resident_memory_bytes'] > 0
    during = [check(s) for s in scrapes if 'nn_train_steps_total' in s]
    if not during:
        print('FAIL: no scrape saw a training step')
        return 1
    final = check(open(prom).read())
    # 2 epochs over the smoke run's training split in batches of 64 (the last
    # one partial): per epoch, samples / 2 images in ceil(samples / 2 / 64) steps.
    per_epoch = final['nn_train_samples_total'] / 2
    if (per_epoch != int(per_epoch) or per_epoch < 500 or
            final['nn_train_steps_total'] != 2 * -(-int(per_epoch) // 64)):
        print('FAIL: final counts %s' % final)
        return 1
    if final['nn_epoch'] != 1 or not final['nn_predicted_samples_total'] >= 0:
        print('FAIL: final %s' % final)
        return 1
    print('OK: %d scrapes (%d during training), final file valid' % (len(scrapes), len(during)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
