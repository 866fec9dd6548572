"""Multi-input forward, MultiheadAttention and the transformer layers."""
import pytest

import libnn
from libnn import nn
from conftest import assert_close, needs

pytestmark = needs('nn_module_forward_n')


class _Adder(nn.Module):
    """Adds the present inputs; absent (None) ones are skipped."""

    def forward(self, x, *rest):
        for r in rest:
            if r is not None:
                x = x + r
        return x


def test_forward_n_builtin_and_python_module():
    libnn.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = libnn.randn(4, 3), libnn.randn(4, 3)
    assert lin.num_inputs == (1, 1)
    assert_close(lin.forward_n(x).tolist(), lin(x).tolist())
    with pytest.raises(libnn.LibnnError, match='Linear takes 1 input, got n = 2'):
        lin.forward_n(x, y)
    add = _Adder()
    assert add.num_inputs == (1, 16)
    # Through C: nn_module_forward_n calls back into the Python forward.
    assert_close(add.forward_n(x, None, y).tolist(), (x + y).tolist())
    assert_close(add(x, y).tolist(), (x + y).tolist())
