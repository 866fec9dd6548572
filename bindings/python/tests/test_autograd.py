"""Autograd through the bindings, against hand-computed gradients."""
import pytest

import libnn
from conftest import assert_close, needs


@needs('nn_mul', 'nn_sum')
def test_square_sum_gradient_is_2x():
    x = libnn.arange(6.0).reshape(2, 3).clone().requires_grad_()
    assert x.requires_grad and x.is_leaf and x.grad is None
    y = (x * x).sum()
    assert not y.is_leaf
    y.backward()
    assert x.grad.tolist() == [[0, 2, 4], [6, 8, 10]]
    (x * x).sum().backward()              # gradients accumulate
    assert x.grad.tolist() == [[0, 4, 8], [12, 16, 20]]
    x.grad = None
    assert x.grad is None


@needs('nn_matmul', 'nn_sum')
def test_matmul_gradients():
    a = libnn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    b = libnn.tensor([[5.0, 6.0], [7.0, 8.0]], requires_grad=True)
    (a @ b).sum().backward()
    # d/da sum(a b) = 1 bᵀ: row sums of b; d/db = aᵀ 1: column sums of a.
    assert_close(a.grad.tolist(), [[11, 15], [11, 15]])
    assert_close(b.grad.tolist(), [[4, 4], [6, 6]])


@needs('nn_mul', 'nn_add_scalar', 'nn_backward_ex')
def test_backward_with_seed_and_retain_graph():
    x = libnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x + 1
    y.backward(libnn.tensor([1.0, 0.5, 0.0]), retain_graph=True)
    assert_close(x.grad.tolist(), [2.0, 2.0, 0.0])
    y.backward(libnn.tensor([1.0, 1.0, 1.0]))
    assert_close(x.grad.tolist(), [4.0, 6.0, 6.0])
    with pytest.raises(libnn.StateError) as e:
        y.backward(libnn.tensor([1.0, 1.0, 1.0]))
    assert e.value.message


@needs('nn_mul', 'nn_sum')
def test_no_grad_and_detach():
    x = libnn.tensor([1.0, 2.0], requires_grad=True)
    with libnn.no_grad():
        assert not libnn.is_grad_enabled()
        y = (x * x).sum()
    assert libnn.is_grad_enabled()
    assert not y.requires_grad
    with pytest.raises(libnn.LibnnError):
        y.backward()

    @libnn.no_grad()
    def f(t):
        return t * t
    assert not f(x).requires_grad
    d = x.detach()
    assert not d.requires_grad and d.tolist() == [1.0, 2.0]


@needs('nn_softmax', 'nn_log', 'nn_mean', 'nn_index_select', 'nn_slice')
def test_chain_through_indexing():
    x = libnn.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    x[0, 1:].sum().backward()
    assert x.grad.tolist() == [[0, 1, 1], [0, 0, 0]]
    x.grad = None
    x[:, [2, 2]].sum().backward()
    assert x.grad.tolist() == [[0, 0, 2], [0, 0, 2]]
