"""Misuse raises a Python exception carrying the library's message."""
import pytest

import libnn
from libnn import _lib
from conftest import needs


def test_status_hierarchy():
    assert issubclass(libnn.ShapeError, libnn.LibnnError)
    assert issubclass(libnn.ShapeError, ValueError)
    assert issubclass(libnn.RangeError, IndexError)
    assert issubclass(libnn.DtypeError, TypeError)
    assert issubclass(libnn.NomemError, MemoryError)
    assert libnn.error_class(-4) is libnn.ShapeError
    assert libnn.error_class(-999) is libnn.LibnnError


def test_reshape_error_carries_message():
    x = libnn.zeros(2, 3)
    with pytest.raises(libnn.ShapeError) as e:
        x.reshape(4, 4)
    assert e.value.status == -4 and e.value.status_name == 'NN_ERR_SHAPE'
    assert 'nn_reshape' in str(e.value) and '[2,3]' in str(e.value)
    # The error is consumed: the next failure reports its own cause.
    assert _lib.lib.nn_last_status() == 0


@needs('nn_add', 'nn_matmul')
def test_op_shape_errors():
    with pytest.raises(libnn.ShapeError) as e:
        libnn.zeros(2, 3) + libnn.zeros(4)
    assert 'nn_add' in str(e.value)
    with pytest.raises(libnn.ShapeError) as e:
        libnn.zeros(2, 3) @ libnn.zeros(2, 3)
    assert 'nn_matmul' in str(e.value)


def test_closed_tensor_raises_not_crashes():
    t = libnn.ones(3)
    t.close()
    assert t.closed
    with pytest.raises(libnn.BadHandleError):
        t.shape
    with pytest.raises(libnn.BadHandleError):
        t + 1
    with pytest.raises(libnn.BadHandleError):
        t.tolist()
    t.close()                              # idempotent
    assert 'closed' in repr(t)
    with libnn.ones(2) as u:
        assert u.sum().item() == 2.0 if 'nn_sum' not in _lib.missing_names else True
    assert u.closed


def test_bad_arguments():
    with pytest.raises(libnn.LibnnError):
        libnn.zeros(-1)
    with pytest.raises(libnn.LibnnError):
        libnn.arange(0, 1, 0)
    with pytest.raises(libnn.ShapeError):
        libnn.ones(3).item()
    with pytest.raises(libnn.RangeError):
        libnn.ones(3).size(5)
    with pytest.raises(TypeError):
        libnn.tensor(object())
    with pytest.raises(libnn.LibnnError):
        libnn.ones(3).requires_grad_() if False else libnn.ones(3, dtype='i64').requires_grad_()
    with pytest.raises(ValueError):
        bool(libnn.ones(3))


def test_missing_symbol_stub_raises():
    stub = _lib._missing_stub('nn_does_not_exist')
    with pytest.raises(libnn.UnsupportedError):
        stub()


@needs('nn_linear_new', 'nn_optim_new', 'nn_dataset_from_tensors', 'nn_model_load_buffer')
def test_closed_and_misused_objects_raise():
    from libnn import nn, optim
    from libnn.data import DataLoader, TensorDataset
    lin = nn.Linear(3, 2)
    with pytest.raises(libnn.ShapeError) as e:
        lin(libnn.ones(2, 4))
    assert 'Linear' in str(e.value) or 'nn_linear' in str(e.value)
    with pytest.raises(libnn.LibnnError):
        lin(libnn.ones(2, 3, dtype='i64'))
    opt = optim.SGD(lin.parameters(), lr=0.1)
    with pytest.raises(libnn.NoGradError):
        opt.step()                                 # no gradients yet
    lin.close()
    with pytest.raises(libnn.BadHandleError):
        lin(libnn.ones(1, 3))
    opt.close()
    with pytest.raises(libnn.BadHandleError):
        opt.step()
    ds = TensorDataset(libnn.zeros(4, 2), [0, 1, 0, 1])
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(libnn.LibnnError):
        TensorDataset(libnn.zeros(4, 2), [0, 1])   # label count mismatch
    loader = DataLoader(ds, 2)
    ds.close()                                     # the loader keeps its own reference
    assert len(list(loader)) == 2
    model = libnn.load_bytes(libnn.save_bytes(nn.Sequential(nn.ReLU())))
    model.close()
    with pytest.raises(libnn.BadHandleError):
        model.predict(libnn.ones(1))
    with pytest.raises(libnn.LibnnError):
        optim.Adam([libnn.ones(2, dtype='i64')], lr=0.1)
