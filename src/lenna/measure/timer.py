"""Time one call on a device: a monotonic ns clock on CPU, CUDA events on a GPU.

Shaped like ``torch.utils.benchmark``'s ``Timer``: the timer owns clock and synchronisation,
the caller owns what is timed. On CUDA a kernel launch returns before the work is done, so
the pass is bracketed by events and the end event is waited for; the queue is drained first
so earlier work is not billed to this pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lenna.errors import InputError

DEVICES = ("cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``; refuses others and a CUDA device this machine lacks."""
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise InputError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"bad device {device!r}: {e}") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


class Timer:
    """Seconds taken by one call of a function on ``device``."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            return self._time_cuda(fn)
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) * 1e-9

    def _time_cuda(self, fn: Callable[[], object]) -> float:
        with torch.cuda.device(self.device):  # events go on this device's current stream
            torch.cuda.synchronize(self.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3
