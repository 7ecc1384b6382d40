"""The op table: every candidate op timed alone at a block's own shapes.

This is the input of the additive baseline ``L(block) = Σ_edges Σ_ops p·L(op)``
(ProxylessNAS, FBNet, the seed's first model). Entries are keyed by the *block's* input
(block type, channels, resolution) and the edge kind — ``down`` for edges that leave a block
input in a reduction block, ``same`` for edges that keep resolution — so a lookup for a block
needs no shape arithmetic. Ops are timed in the same bench, with the same timer, as blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from lenna.measure.config import MeasureConfig
from lenna.measure.ort_bench import gated_bench
from lenna.measure.reference import Calibration, normalisation
from lenna.measure.threads import torch_threads
from lenna.measure.timer import Timer
from lenna.signals import stop_if_signalled
from lenna.space import Block, SearchSpace


def channel_grid(lo: int, hi: int) -> list[int]:
    """Powers of two inside ``[lo, hi]`` plus both ends: dense enough for log-interpolation."""
    pts = {lo, hi} | {2**k for k in range(math.ceil(math.log2(lo)), int(math.log2(hi)) + 1)}
    return sorted(p for p in pts if lo <= p <= hi)


def measure_ops_at(
    space: SearchSpace,
    block_type: str,
    channels: int,
    resolution: int,
    config: MeasureConfig,
    passes: int = 20,
    fp_hash: str = "",
    calibration: Calibration | None = None,
) -> list[dict]:
    """Op-table rows for one block shape: each op of each edge kind, ``passes`` timed calls
    (with ``config.normalise``: at the speed of ``calibration``, like labels)."""
    with torch_threads(config.threads):
        return _ops_at(
            space,
            block_type,
            channels,
            resolution,
            config,
            passes,
            fp_hash,
            calibration,
        )


def _ops_at(
    space: SearchSpace,
    block_type: str,
    channels: int,
    resolution: int,
    config: MeasureConfig,
    passes: int,
    fp_hash: str,
    calibration: Calibration | None,
) -> list[dict]:
    device = torch.device(config.device)
    block = Block(space, block_type, channels, "gated").to(device, config.torch_dtype)
    shape = (config.batch, channels, resolution, resolution)
    inputs = tuple(
        torch.randn(shape, device=device, dtype=config.torch_dtype) for _ in range(space.num_inputs)
    )
    ref, z0 = normalisation(space, config, calibration, (channels, resolution))
    bench = gated_bench(config, block, inputs, Timer(device), torch.Generator().manual_seed(0), ref)
    bench.warm_up(config.warmup_passes)
    rows = []
    for t in bench.time_ops(passes, z0):
        ms = np.asarray(t["times"]) * 1e3
        q25, q40, q75 = np.quantile(ms, [0.25, 0.4, 0.75])
        rows.append(
            {
                "op": t["op"],
                "block_type": block_type,
                "edge_kind": "down" if t["stride"] == 2 else "same",
                "channels": channels,
                "resolution": resolution,
                "batch": config.batch,
                "c_in": t["c_in"],
                "c_out": t["c_out"],
                "stride": t["stride"],
                "latency_ms": float(q40),
                "spread_ms": float(q75 - q25),
                "passes": passes,
                "fingerprint": fp_hash,
            }
        )
    return rows


def op_grid(
    channels: list[int], resolutions: list[int], block_types: list[str]
) -> list[tuple[str, int, int]]:
    """Every (block type, resolution, channels) of the grid; reductions only at even sizes."""
    return [
        (bt, r, c)
        for bt in block_types
        for r in resolutions
        for c in channels
        if not (bt == "reduction" and r % 2)
    ]


def measure_op_table(
    space: SearchSpace,
    shapes: list[tuple[str, int, int]],
    config: MeasureConfig,
    passes: int = 20,
    fp_hash: str = "",
    on_shape: Callable[[list[dict]], None] | None = None,
    calibration: Calibration | None = None,
) -> list[dict]:
    """Op-table rows of ``shapes``; ``on_shape`` receives each shape's rows when measured."""
    out = []
    for bt, res, c in shapes:
        stop_if_signalled()  # a handler's raise lost in a callback stops here
        rows = measure_ops_at(space, bt, c, res, config, passes, fp_hash, calibration)
        if on_shape:
            on_shape(rows)
        out += rows
    return out
