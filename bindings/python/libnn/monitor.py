"""Metrics for monitoring systems (Prometheus text exposition format).

    from libnn.monitor import Monitor
    with Monitor('metrics.prom', port=0, labels={'job': 'mnist'}) as mon:
        print(mon.port)                 # GET http://127.0.0.1:<port>/metrics
        with mon.attached():            # libnn.fit on this thread reports to it
            libnn.fit(model, opt, train_loader, epochs=3)
        mon.set_gauge('my_dataset_size', 60000)
"""
import contextlib
import ctypes

from ._lib import check, check_ptr, lib, raise_last
from .io import _b

__all__ = ['Monitor']


class Monitor:
    """Training and inference metrics, written atomically to path (None: no
    file) and, with port not None, served on address:port (0: a free port)."""

    def __reduce__(self):
        raise TypeError('cannot copy or pickle a libnn Monitor')

    _h = None

    def __init__(self, path=None, port=None, address=None, labels=None):
        self._h = check_ptr(lib.nn_monitor_new(None if path is None else _b(path)))
        try:
            for k, v in (labels or {}).items():
                check(lib.nn_monitor_set_label(self._h, k.encode(), str(v).encode()))
            if port is not None:
                self.serve(port, address)
        except BaseException:
            self.close()
            raise

    def _handle(self):
        if not self._h:
            raise ValueError('the Monitor is closed')
        return self._h

    def serve(self, port=0, address=None):
        check(lib.nn_monitor_serve(self._handle(), None if address is None else address.encode(),
                                   int(port)))

    @property
    def port(self):
        p = lib.nn_monitor_port(self._handle())
        if p < 0:
            raise_last()
        return p

    def set_gauge(self, name, value, help=None):
        check(lib.nn_monitor_set_gauge(self._handle(), name.encode(),
                                       None if help is None else help.encode(), float(value)))

    def record_step(self, loss, samples, seconds):
        check(lib.nn_monitor_record_step(self._handle(), float(loss), int(samples),
                                         float(seconds)))

    def record_epoch(self, epoch, train_loss, val_loss=float('nan'), val_accuracy=float('nan'),
                     lr=float('nan'), seconds=float('nan')):
        check(lib.nn_monitor_record_epoch(self._handle(), int(epoch), float(train_loss),
                                          float(val_loss), float(val_accuracy), float(lr),
                                          float(seconds)))

    def text(self):
        """The exposition text now."""
        p = check_ptr(lib.nn_monitor_text(self._handle()))
        try:
            return ctypes.string_at(p).decode()
        finally:
            lib.nn_free(p)

    def write(self):
        check(lib.nn_monitor_write(self._handle()))

    @contextlib.contextmanager
    def attached(self):
        """nn_fit calls on this thread report to this monitor meanwhile."""
        check(lib.nn_fit_set_monitor(self._handle()))
        try:
            yield self
        finally:
            check(lib.nn_fit_set_monitor(None))

    def close(self):
        h, self._h = self._h, None
        if h:
            lib.nn_monitor_free(h)

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
