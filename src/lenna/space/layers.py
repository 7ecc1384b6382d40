"""Building blocks the registered ops are made of.

Every op's output size follows one rule: ``ceil(H / stride)``, for odd and even ``H``; the
shape tests hold every op to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, k: int, stride: int, dilation: int = 1) -> nn.Module:
    """The seed's plain convolution: conv (no bias) + BN + ReLU, same padding."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def dw_conv_bn_relu(c_in: int, c_out: int, k: int, stride: int, dilation: int = 1) -> nn.Module:
    """The seed's "DW" convolution: depthwise k×k + pointwise 1×1 + BN + ReLU."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dilation, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def relu_conv_bn(c_in: int, c_out: int, k: int, stride: int, dilation: int = 1) -> nn.Module:
    """DARTS's pre-activation ordering: ReLU + conv + BN."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
    )


def dil_conv(c_in: int, c_out: int, k: int, stride: int, dilation: int = 2) -> nn.Module:
    """DARTS's dilated separable conv: ReLU + dilated depthwise + pointwise + BN."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dilation, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )


def sep_conv(c_in: int, c_out: int, k: int, stride: int) -> nn.Module:
    """DARTS's separable conv: two stacked depthwise-separable convs, the first strided."""
    return nn.Sequential(dil_conv(c_in, c_in, k, stride, 1), dil_conv(c_in, c_out, k, 1, 1))


class FactorizedReduce(nn.Module):
    """Halve H and W without losing half the pixels: two offset 1×1 stride-2 convs, concatenated.

    The offset path is padded so odd resolutions give ``ceil(H / 2)`` like every other op; odd
    ``C_out`` is split unevenly between the two paths. Along an even side the padded row (or
    column) is never read (the stride-2 1×1 conv reads even indices only), so it is not
    padded: the TorchScript export that ONNX Runtime labels time then has no Pad node that
    the dynamo export `lenna export` writes lacks (``benchmarks/diagnostics/ort_assembled.py``).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        half = c_out // 2
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, half, 1, 2, bias=False) if half else None
        self.conv_b = nn.Conv2d(c_in, c_out - half, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        # H and W are fixed in every export (a piece per shape; `lenna export`: batch only)
        odd_h, odd_w = int(x.shape[2]) % 2, int(x.shape[3]) % 2
        if odd_h or odd_w:
            shifted = F.pad(shifted, (0, odd_w, 0, odd_h))
        shifted = self.conv_b(shifted)
        if self.conv_a is None:
            return self.bn(shifted)
        return self.bn(torch.cat([self.conv_a(x), shifted], dim=1))


class Zero(nn.Module):
    """DARTS's ``none``: a zero tensor of the output shape (the edge contributes nothing)."""

    def __init__(self, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_out, self.stride = c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.c_out, -(-h // s), -(-w // s))


class SamePool2x2(nn.Module):
    """A 2×2 pool; at stride 1 the right/bottom border is replicated so H is kept."""

    def __init__(self, kind: str, stride: int) -> None:
        super().__init__()
        self.stride = stride
        cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        self.pool = cls(2, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return self.pool(x)


def pool3x3(kind: str, stride: int) -> nn.Module:
    """3×3 pool with same padding and no BN (average excludes the padding)."""
    if kind == "max":
        return nn.MaxPool2d(3, stride, 1)
    return nn.AvgPool2d(3, stride, 1, count_include_pad=False)


def match_channels(op: nn.Module, c_in: int, c_out: int) -> nn.Module:
    """Append a 1×1 conv + BN + ReLU to a channel-preserving op when ``C_out != C_in``."""
    if c_in == c_out:
        return op
    return nn.Sequential(op, conv_bn_relu(c_in, c_out, 1, 1))
