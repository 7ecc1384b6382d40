"""Refuse sizes that cannot fit before allocating them.

Why: ``--channels 8:99999999`` asked for a 28 GB block and died in a traceback, leaving a file
that refused the corrected command. An estimate made on torch's ``meta`` device (modules built
without memory) against what the device has left turns that into one line before anything is
allocated or written. The estimate is coarse on purpose: it catches sizes that are off by
orders of magnitude, not the last 10 %.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from lenna.errors import InputError

SHARE = 0.8  # of the memory available now, at most


def available_bytes(device: str = "cpu") -> int:
    """Memory free for this process on ``device`` now (CPU: MemAvailable)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def parameter_bytes(
    build: Callable[[], nn.Module], bytes_per_value: int = 4, what: str = "the model"
) -> int:
    """Bytes of the parameters and buffers of ``build()``, built on the meta device."""
    try:
        with torch.device("meta"):
            module = build()
    except RuntimeError as e:  # a size past 2**63 bytes: torch cannot even describe it
        if "overflow" not in str(e).lower():
            raise
        raise InputError(
            f"{what} is too large to build (its tensor sizes overflow); choose smaller sizes"
        ) from None
    n = sum(t.numel() for t in (*module.parameters(), *module.buffers()))
    return n * bytes_per_value


def check_fits(what: str, need_bytes: int, device: str = "cpu") -> None:
    """One line when ``need_bytes`` exceeds :data:`SHARE` of what ``device`` has free."""
    have = available_bytes(device)
    if need_bytes > SHARE * have:
        raise InputError(
            f"{what} needs about {_gb(need_bytes)} of memory, more than this {device} has free "
            f"({_gb(have)}); choose smaller sizes"
        )


def _gb(n: float) -> str:
    if n >= 2**40:
        return f"{n / 2**40:,.0f} TB"
    return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"


def block_bytes(
    space: object, block_type: str, channels: int, resolution: int, batch: int = 1
) -> int:
    """A measured block's weights (every candidate op) and one pass's activations, float32."""
    from lenna.space import Block

    sh = space.shapes(block_type, channels, resolution)  # type: ignore[attr-defined]
    weights = parameter_bytes(
        lambda: Block(space, block_type, channels, "gated"), what=f"a {block_type} block"
    )
    per_px = sh["edge_channels"] * (space.num_edges + space.num_nodes)  # type: ignore[attr-defined]
    per_px += channels * space.num_inputs  # type: ignore[attr-defined]
    return weights + 4 * batch * per_px * resolution * resolution
