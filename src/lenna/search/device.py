"""Where a search and the training of derived networks compute: ``auto``, ``cpu`` or
``cuda[:N]``.

Why apart from the measurement device: the latency a search optimises is the *target*
device's (the predictor's labels, timed wherever they were), while the supernet, α, the latency
term and training run wherever is fastest (a GPU when there is one). ``evaluate-arch``'s
``--measure-device`` times on the labels' device unless told otherwise.
"""

from __future__ import annotations

import torch

from lenna.errors import InputError
from lenna.measure.timer import resolve_device

COMPUTE_DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def check_spelling(spec: str | None) -> None:
    """Refuse a device that is no device anywhere (``tpu``); whether this machine has it is
    :func:`compute_device`'s question, asked when the work starts (a run folder written on a
    GPU machine can still be read and resumed on another device)."""
    if spec in (None, "auto", "cpu"):
        return
    kind, _, index = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if kind != "cuda" or (index and not index.isdigit()):
        raise InputError(
            f"unknown compute device {spec!r}; expected one of: {', '.join(COMPUTE_DEVICES)}"
        )


def compute_device(spec: str | None) -> torch.device:
    """``auto`` (or ``None``): the first GPU when CUDA is available, else the CPU; ``cpu``;
    ``cuda[:N]`` (refused in one line where there is no such GPU)."""
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(spec, str) or spec.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(
            f"unknown compute device {spec!r}; expected one of: {', '.join(COMPUTE_DEVICES)}"
        )
    return resolve_device(spec)
