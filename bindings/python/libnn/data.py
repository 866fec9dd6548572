"""Datasets, the batch loader and metrics (torch.utils.data-like)."""
import os
from ctypes import byref, c_double, c_float, c_int64, c_void_p

from . import _decls
from ._lib import check, check_ptr, lib, raise_last, text
from ._handle import Handle
from ._tensor import Tensor, _closed_error, _h, _wrap, _wrap_borrowed, as_tensor, int64, tensor


__all__ = ['Dataset', 'TensorDataset', 'DataLoader', 'accuracy', 'topk_accuracy',
           'confusion_matrix', 'precision_recall', 'Meter', 'Progress', 'MetricsLog',
           'fashion_mnist', 'fit']


def _b(s):
    return os.fsencode(s) if not isinstance(s, bytes) else s


class Dataset(Handle):
    """Indexed samples (x, y). Build with TensorDataset, Dataset.from_idx,
    Dataset.from_csv or Dataset.from_image_folder."""

    _free = staticmethod(lib.nn_dataset_free)

    def __init__(self, ptr):
        self._h = check_ptr(ptr)

    @classmethod
    def from_idx(cls, images_path, labels_path):
        """MNIST / Fashion-MNIST IDX files (gzip or plain)."""
        return cls(lib.nn_dataset_from_idx(_b(images_path), _b(labels_path)))

    @classmethod
    def from_csv(cls, path, header=True, delimiter=',', label_column=-1, has_label=True,
                 policy='error', fill_value=0.0):
        """Numeric CSV; returns the dataset (see .dropped / .filled)."""
        pol = {'error': 0, 'drop': 1, 'fill': 2}[policy]
        dropped, filled = c_int64(), c_int64()
        ds = cls(lib.nn_dataset_from_csv(_b(path), bool(header), delimiter.encode(),
                                         bool(has_label), int(label_column), pol,
                                         float(fill_value), byref(dropped), byref(filled)))
        ds.dropped, ds.filled = dropped.value, filled.value
        return ds

    @classmethod
    def from_image_folder(cls, root, height, width, channels=3):
        return cls(lib.nn_dataset_from_image_folder(_b(root), int(height), int(width),
                                                    int(channels)))

    def __len__(self):
        n = lib.nn_dataset_len(self._handle())
        if n < 0:
            raise_last()
        return n

    def __getitem__(self, i):
        """Sample i after transforms as a batch of one: (x [1, ...], y [1])."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError('dataset index %d out of range for %d samples' % (i, n))
        x, y = c_void_p(), c_void_p()
        check(lib.nn_dataset_get(self._handle(), int(i) % n, byref(x), byref(y)))
        return _wrap(x.value), _wrap(y.value)

    @property
    def sample_shape(self):
        buf = (c_int64 * _decls.DEFINES['NN_MAX_DIMS'])()
        nd = lib.nn_dataset_sample_shape(self._handle(), buf, len(buf))
        if nd < 0:
            raise_last()
        return tuple(buf[:nd])

    @property
    def num_classes(self):
        n = lib.nn_dataset_num_classes(self._handle())
        if n < 0:
            raise_last()
        return n

    def class_name(self, i):
        return text(check_ptr(lib.nn_dataset_class_name(self._handle(), int(i))))

    def label(self, i):
        v = lib.nn_dataset_label(self._handle(), int(i))
        if v < 0:
            raise_last()
        return v

    def subset(self, indices):
        idx = list(indices)
        arr = (c_int64 * max(len(idx), 1))(*idx)
        return Dataset(lib.nn_dataset_subset(self._handle(), arr, len(idx)))

    def split(self, fractions, seed=0):
        """Seeded random split into len(fractions) datasets."""
        fr = (c_double * len(fractions))(*fractions)
        out = (c_void_p * len(fractions))()
        check(lib.nn_dataset_split(self._handle(), fr, len(fractions),
                                   int(seed) & 0xFFFFFFFFFFFFFFFF, out))
        return [Dataset(p) for p in out]

    def set_scale(self, on=True):
        check(lib.nn_dataset_set_scale(self._handle(), bool(on)))
        return self

    def set_normalize(self, mean, std):
        """Per-channel (x - mean) / std; empty lists turn it off."""
        mean, std = list(mean), list(std)
        if len(mean) != len(std):
            raise ValueError('set_normalize: mean and std differ in length')
        m = (c_float * max(len(mean), 1))(*mean)
        s = (c_float * max(len(std), 1))(*std)
        check(lib.nn_dataset_set_normalize(self._handle(), m, s, len(mean)))
        return self

    def compute_normalize(self):
        check(lib.nn_dataset_compute_normalize(self._handle()))
        return self.normalize

    @property
    def normalize(self):
        """(mean, std) lists in use (empty when off)."""
        cap = 64
        m, s = (c_float * cap)(), (c_float * cap)()
        n = lib.nn_dataset_get_normalize(self._handle(), m, s, cap)
        if n < 0:
            raise_last()
        return list(m[:n]), list(s[:n])

    def set_random_flip(self, p=0.5, seed=0):
        check(lib.nn_dataset_set_random_flip(self._handle(), float(p),
                                             int(seed) & 0xFFFFFFFFFFFFFFFF))
        return self

    def set_random_crop(self, padding, seed=0):
        check(lib.nn_dataset_set_random_crop(self._handle(), int(padding),
                                             int(seed) & 0xFFFFFFFFFFFFFFFF))
        return self

    def set_one_hot(self, num_classes):
        check(lib.nn_dataset_set_one_hot(self._handle(), int(num_classes)))
        return self


def TensorDataset(x, y=None):  # noqa: N802  (reads like the torch class)
    """A dataset over in-memory tensors x [N, ...] (u8 or f32) and y [N] (i64)."""
    x = as_tensor(x)
    if y is not None and not isinstance(y, Tensor):
        y = tensor(y, dtype=int64)
    return Dataset(lib.nn_dataset_from_tensors(_h(x), None if y is None else _h(y)))


def fashion_mnist(root='/usr/share/datasets/fashion-mnist', train=True):
    """The Fashion-MNIST (or MNIST) IDX files under root."""
    pre = 'train' if train else 't10k'
    ext = '.gz' if os.path.exists(os.path.join(root, pre + '-images-idx3-ubyte.gz')) else ''
    return Dataset.from_idx(os.path.join(root, pre + '-images-idx3-ubyte' + ext),
                            os.path.join(root, pre + '-labels-idx1-ubyte' + ext))


class DataLoader(Handle):
    """Batches over a dataset: iterate for (x, y) per batch; each epoch
    (each iteration) visits every sample once, reshuffled when shuffle."""

    _free = staticmethod(lib.nn_loader_free)

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=0, drop_last=False,
                 prefetch=True):
        self.dataset = dataset
        self._h = check_ptr(lib.nn_loader_new(dataset._handle(), int(batch_size),
                                              bool(shuffle), int(seed) & 0xFFFFFFFFFFFFFFFF))
        if drop_last:
            check(lib.nn_loader_set_drop_last(self._h, True))
        if not prefetch:
            check(lib.nn_loader_set_prefetch(self._h, False))
        self._started = False

    @property
    def c_dataset(self):
        """The loader's dataset as seen by C (a new Dataset reference)."""
        return Dataset(lib.nn_dataset_retain(check_ptr(lib.nn_loader_dataset(self._handle()))))

    def __len__(self):
        n = lib.nn_loader_num_batches(self._handle())
        if n < 0:
            raise_last()
        return n

    def __iter__(self):
        h = self._handle()
        if self._started:
            check(lib.nn_loader_reset(h))
        self._started = True
        x, y = c_void_p(), c_void_p()
        while lib.nn_loader_next(h, byref(x), byref(y)):
            # The loader lends its batch until the next call: take our own
            # references so a batch kept by the caller stays valid.
            yield _wrap_borrowed(x.value), _wrap_borrowed(y.value)
        check(lib.nn_loader_status(h))


# ----------------------------------------------------------------- metrics


def accuracy(logits, labels):
    """Fraction of rows whose argmax equals the label."""
    out = c_double()
    check(lib.nn_accuracy(_h(logits), _h(as_tensor(labels)), byref(out)))
    return out.value


def topk_accuracy(logits, labels, k):
    out = c_double()
    check(lib.nn_topk_accuracy(_h(logits), _h(as_tensor(labels)), int(k), byref(out)))
    return out.value


def confusion_matrix(pred, labels, num_classes):
    return _wrap(lib.nn_confusion_matrix(_h(pred), _h(as_tensor(labels)), int(num_classes)))


def precision_recall(confusion):
    """Per-class (precision, recall) lists from a confusion matrix [C, C]."""
    c = confusion.shape[0]
    p, r = (c_double * max(c, 1))(), (c_double * max(c, 1))()
    check(lib.nn_precision_recall(_h(confusion), p, r, c))
    return list(p[:c]), list(r[:c])


class Meter(Handle):
    """A weighted running mean (of losses)."""

    _free = staticmethod(lib.nn_meter_free)

    def __init__(self):
        self._h = check_ptr(lib.nn_meter_new())

    def add(self, value, count=1.0):
        check(lib.nn_meter_add(self._handle(), float(value), float(count)))

    @property
    def mean(self):
        return lib.nn_meter_mean(self._handle())

    @property
    def count(self):
        return lib.nn_meter_count(self._handle())

    def reset(self):
        check(lib.nn_meter_reset(self._handle()))


class Progress(Handle):
    """Progress display on a file descriptor (1 stdout, 2 stderr)."""

    _free = staticmethod(lib.nn_progress_free)

    def __init__(self, epochs, batches_per_epoch, fd=2):
        self._h = check_ptr(lib.nn_progress_new(int(fd), int(epochs), int(batches_per_epoch)))

    def begin_epoch(self, epoch):
        check(lib.nn_progress_begin_epoch(self._handle(), int(epoch)))

    def update(self, batch_index, loss, batch_size):
        check(lib.nn_progress_update(self._handle(), int(batch_index), float(loss),
                                     int(batch_size)))

    def end_epoch(self, extra=None):
        check(lib.nn_progress_end_epoch(self._handle(),
                                        None if extra is None else extra.encode()))


class MetricsLog(Handle):
    """CSV log: epoch,train_loss,val_loss,val_acc,lr,seconds."""

    _free = staticmethod(lambda h: check(lib.nn_metrics_log_close(h)))

    def __init__(self, path):
        self._h = check_ptr(lib.nn_metrics_log_open(_b(path)))

    def write(self, epoch, train_loss, val_loss, val_acc, lr, seconds):
        if not self._h:
            raise _closed_error('MetricsLog')
        check(lib.nn_metrics_log_write(self._h, int(epoch), float(train_loss),
                                       float(val_loss), float(val_acc), float(lr),
                                       float(seconds)))

# --------------------------------------------------------------------- fit

_FIT_LOSS = {'cross_entropy': 0, 'mse': 1}


def fit(model, optimizer, train, epochs=1, val=None, loss='cross_entropy', patience=0,
        progress=None, log=None, on_epoch=None):
    """The C training loop (nn_fit): returns a list of per-epoch dicts
    (epoch, train_loss, val_loss, val_acc, seconds). on_epoch(record) may
    return False to stop. train / val are DataLoaders."""
    from .nn import _CallFrame
    history, errors = [], []

    def cb(epoch, train_loss, val_loss, val_acc, seconds, user):
        rec = {'epoch': epoch, 'train_loss': train_loss, 'val_loss': val_loss,
               'val_acc': val_acc, 'seconds': seconds}
        history.append(rec)
        try:
            return on_epoch is None or on_epoch(rec) is not False
        except BaseException as e:  # re-raised after nn_fit returns
            errors.append(e)
            return False
    c_cb = _decls.nn_fit_epoch_fn(cb)
    with _CallFrame():
        st = lib.nn_fit(model._handle(), optimizer._handle(), _FIT_LOSS[loss], train._handle(),
                        None if val is None else val._handle(), int(epochs), int(patience),
                        None if progress is None else progress._handle(),
                        None if log is None else log._h, c_cb, None)
    if errors:
        lib.nn_clear_error()
        raise errors[0]
    check(st)
    return history
