"""The candidate ops of both presets, registered by name.

``lenna`` (the seed's block): eight convolutions (plain/depthwise-separable × 3/5 × dilation
1/2), 3×3 pools, ``Identity``; downsampling edges swap the 3×3 pools and ``Identity`` for
2×2 pools followed by a 1×1 conv. ``darts``: the eight ops of Liu et al. (2019).
"""

from __future__ import annotations

from torch import nn

from lenna.space import layers as L
from lenna.space.registry import register_op


def _identity_or_reduce(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 2:
        return L.FactorizedReduce(c_in, c_out)
    if c_in != c_out:
        return L.relu_conv_bn(c_in, c_out, 1, 1)
    return nn.Identity()


def _register_seed_convs() -> None:
    for k in (3, 5):
        for dilation, d in ((1, ""), (2, "d")):
            for dw, suffix in ((False, "Conv"), (True, "ConvDW")):
                make = L.dw_conv_bn_relu if dw else L.conv_bn_relu

                def build(c_in: int, c_out: int, stride: int, k=k, dilation=dilation, make=make):
                    return make(c_in, c_out, k, stride, dilation)

                register_op(f"{k}x{k}_{d}{suffix}")(build)


_register_seed_convs()


def _pool3(kind: str):
    def build(c_in: int, c_out: int, stride: int) -> nn.Module:
        return L.match_channels(L.pool3x3(kind, stride), c_in, c_out)

    return build


def _pool2_then_conv(kind: str):
    def build(c_in: int, c_out: int, stride: int) -> nn.Module:
        return nn.Sequential(L.SamePool2x2(kind, stride), L.conv_bn_relu(c_in, c_out, 1, 1))

    return build


def _zero(c_in: int, c_out: int, stride: int) -> nn.Module:
    return L.Zero(c_out, stride)


for _kind in ("max", "avg"):
    register_op(f"3x3_{_kind}pool")(_pool3(_kind))
    register_op(f"2x2_{_kind}pool")(_pool2_then_conv(_kind))
    register_op(f"{_kind}_pool_3x3")(_pool3(_kind))
register_op("Identity")(_identity_or_reduce)
register_op("skip_connect")(_identity_or_reduce)
register_op("none")(_zero)
for _k in (3, 5):
    register_op(f"sep_conv_{_k}x{_k}")(lambda c_in, c_out, s, k=_k: L.sep_conv(c_in, c_out, k, s))
    register_op(f"dil_conv_{_k}x{_k}")(lambda c_in, c_out, s, k=_k: L.dil_conv(c_in, c_out, k, s))
