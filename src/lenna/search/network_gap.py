"""The gap between a whole network and its parts timed alone, measured once per search.

A search predicts the network as the sum of its parts: each cell as its label timed it, plus
the fixed part (stem, norms, classifier). Under ONNX Runtime each part timed alone is a session
of its own and pays the runtime's per-call cost (about 7 µs here), which the deployed network
pays once; in benchmarks/search_tradeoff.py the parts of a 0.1 ms `darts` network summed to
1.37× the network. That does not depend on which ops the cells hold, only on how many parts
there are and how the runtime joins them, so it is measured once, on the network the fixed part
is measured on, and added to every whole-network prediction (budget included): −34 µs at the
uniform-α `darts` network before a search, where the derived network's own was −31 µs.

Eager PyTorch has no per-part cost; there the gap measured at the uniform-α network (+0.17 ms
`lenna`, +0.25 ms `darts`, 5–15 %) did not carry to derived networks (+0.00 to +0.23 ms
implied by benchmarks/search_tradeoff.py), and whole-network predictions without it were
within 4 %, so eager searches do not measure it (see docs/search.md).
"""

from __future__ import annotations

import torch

from lenna.measure.config import MeasureConfig
from lenna.measure.reference import Calibration
from lenna.search.network import NetConfig, Network
from lenna.search.verify import measure_network
from lenna.space import SearchSpace, derive


def gap_applies(config: MeasureConfig) -> bool:
    """Whether a runtime's parts pay a per-call cost the whole network pays once: every
    backend but eager PyTorch runs each part timed alone as a session of its own."""
    return config.backend != "torch"


def measure_network_gap(
    space: SearchSpace,
    net: NetConfig,
    fixed_ms: float,
    config: MeasureConfig | None = None,
    calibration: Calibration | None = None,
    repeats: int = 3,
) -> dict:
    """The network of shape ``net`` (the cells derived from uniform α, as the fixed part's)
    timed whole and cell by cell, as ``lenna evaluate-arch`` times a derived network.

    Returns ``gap_ms`` = whole − Σ cells − ``fixed_ms`` (the fixed part measured alone), the
    median of ``repeats`` measurements: a difference of two times of about the same size
    carries both their noise (single ORT gaps of one network spread 33–43 µs), with the
    measurements behind it."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    torch.manual_seed(0)
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, net, "fixed", choices).eval()
    runs = []
    for _ in range(repeats):
        lat = measure_network(model, config or MeasureConfig(), calibration)
        gap = lat["measured_ms"] - lat["measured_cells_ms"] - float(fixed_ms)
        runs.append((gap, lat["measured_ms"], lat["measured_cells_ms"]))
    gap, whole, cells = sorted(runs)[(len(runs) - 1) // 2]
    return {
        "gap_ms": gap,
        "gaps_ms": [r[0] for r in runs],
        "network_ms": whole,
        "cells_ms": cells,
        "cells": choices,
    }
