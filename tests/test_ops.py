"""Every registered op keeps the one shape rule: (N, C_out, ceil(H/s), ceil(W/s))."""

import math

import pytest
import torch
import torch.nn.functional as F

from lenna.errors import InputError
from lenna.space import build_op, get_space, list_ops, register_op
from lenna.space.layers import FactorizedReduce

pytestmark = pytest.mark.usefixtures("single_thread")

CHANNELS = [(3, 3), (4, 8), (5, 7)]
RESOLUTIONS = [(8, 8), (7, 7)]


@pytest.mark.parametrize("hw", RESOLUTIONS, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("c_in,c_out", CHANNELS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", list_ops())
def test_op_output_shape(name, stride, c_in, c_out, hw):
    h, w = hw
    op = build_op(name, c_in, c_out, stride)
    y = op(torch.randn(2, c_in, h, w))
    assert tuple(y.shape) == (2, c_out, math.ceil(h / stride), math.ceil(w / stride))


def test_both_presets_only_use_registered_ops():
    registered = set(list_ops())
    for name in ("lenna", "darts"):
        space = get_space(name)
        assert set(space.ops) | set(space.down_ops) <= registered


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (8, 7), (7, 8), (1, 1), (2, 2), (1, 2), (2, 1)])
def test_factorized_reduce_is_the_padded_formula_and_pads_only_odd_sides(hw, monkeypatch):
    """The values stay DARTS's (the offset path padded right and bottom, then strided), but a
    side the stride-2 conv would never read past is not padded: at an even size no pad runs,
    so no exporter can leave a Pad node in the graph."""
    torch.manual_seed(0)
    m = FactorizedReduce(6, 5).eval()
    x = torch.randn(2, 6, *hw)
    with torch.no_grad():
        r = m.relu(x)
        shifted = m.conv_b(F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1)))
        want = m.bn(torch.cat([m.conv_a(r), shifted], dim=1))
        pads, pad = [], F.pad
        monkeypatch.setattr(F, "pad", lambda t, p, *a, **k: pads.append(p) or pad(t, p, *a, **k))
        torch.testing.assert_close(m(x), want, rtol=0, atol=1e-6)
    assert pads == ([] if hw[0] % 2 == hw[1] % 2 == 0 else [(0, hw[1] % 2, 0, hw[0] % 2)])


def test_none_op_outputs_zeros():
    y = build_op("none", 4, 4, 2)(torch.randn(1, 4, 7, 7))
    assert torch.count_nonzero(y) == 0


def test_identity_at_stride_1_is_identity():
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(build_op("Identity", 4, 4, 1)(x), x)


def test_unknown_op_names_the_op():
    with pytest.raises(InputError, match="conv_9x9_nope"):
        build_op("conv_9x9_nope", 4, 4, 1)


@pytest.mark.parametrize("c_in,c_out,bad", [(0, 4, "0"), (4, -3, "-3")])
def test_build_op_refuses_channels_below_one(c_in, c_out, bad):
    with pytest.raises(InputError, match=f"got {bad}"):
        build_op("3x3_Conv", c_in, c_out, 1)


def test_build_op_refuses_stride_3():
    with pytest.raises(InputError, match="got 3"):
        build_op("3x3_Conv", 4, 4, 3)


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="3x3_Conv"):
        register_op("3x3_Conv")(lambda c_in, c_out, s: torch.nn.Identity())
