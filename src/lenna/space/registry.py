"""Op registry: one place mapping an op name to ``constructor(C_in, C_out, stride)``.

Modelled on timm's registries: ops register themselves by decorator, spaces refer to them by
name only, so a new op is one function and a new space is data.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lenna.errors import InputError

OpConstructor = Callable[[int, int, int], nn.Module]
_OPS: dict[str, OpConstructor] = {}


def register_op(name: str) -> Callable[[OpConstructor], OpConstructor]:
    """Register ``fn(C_in, C_out, stride) -> nn.Module`` under ``name``."""

    def wrap(fn: OpConstructor) -> OpConstructor:
        if name in _OPS:
            raise ValueError(f"op {name!r} is already registered")
        _OPS[name] = fn
        return fn

    return wrap


def list_ops() -> list[str]:
    """All registered op names, in registration order."""
    return list(_OPS)


def build_op(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """Build op ``name``; refuses unknown names, channels < 1 and strides other than 1 or 2."""
    if name not in _OPS:
        raise InputError(f"unknown op {name!r}; expected one of: {', '.join(_OPS)}")
    for label, value in (("C_in", c_in), ("C_out", c_out)):
        if int(value) != value or value < 1:
            raise InputError(f"{label} must be an integer >= 1, got {value!r}")
    if stride not in (1, 2):
        raise InputError(f"stride must be 1 or 2, got {stride!r}")
    return _OPS[name](int(c_in), int(c_out), int(stride))
