"""Each cell's input preprocessing as the network runs it, against what its label timed.

A `darts` label is the cell timed standalone: both inputs have the cell's own C channels and
each passes a 1×1 ReLU-conv-BN to the edge width. In the network the inputs are earlier cells'
outputs (a concat of four nodes: up to 4C channels, or the stem's 3C), and after a reduction
the older input passes a factorised reduce instead. That difference does not depend on the
cell's ops, only on where the cell sits, so it is measured once per network shape (beside the
fixed part) and added to that cell's prediction. In benchmarks/search_tradeoff.py it took the
derived `darts` cells' median error from 2.9 to 1.9 %, and a reduction cell reading 4C-wide
inputs from −15.8 to −1.6 %.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lenna.measure.config import MeasureConfig
from lenna.measure.fixed import measure_module
from lenna.measure.reference import Calibration
from lenna.search.network import NetConfig, Network, cell_inputs, cell_specs
from lenna.space import Block, SearchSpace, derive


class Preprocess(nn.Module):
    """A cell's preprocessing alone: each input through its own module."""

    def __init__(self, mods: nn.ModuleList) -> None:
        super().__init__()
        self.mods = mods

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m(x) for m, x in zip(self.mods, inputs, strict=True))


def preprocessing_offsets(
    space: SearchSpace,
    net: NetConfig,
    config: MeasureConfig | None = None,
    reference_ms: float | None = None,
    on_cell: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Per cell of the network of shape ``net``: its preprocessing as the network runs it
    minus as its label ran it (ms, under ``config``, at the calibrated speed ``reference_ms``
    when normalised). Zero where the two are the same module shape, and in spaces without
    preprocessing. ``on_cell(i, n)`` is called as cells are done (progress)."""
    specs = cell_specs(space, net)
    if not space.preprocess:
        return [0.0] * len(specs)
    config = config or MeasureConfig()
    torch.manual_seed(0)
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, net, "fixed", choices).eval()
    x = torch.randn(config.batch, net.in_channels, net.resolution, net.resolution)
    ref = {"space": space, "calibration": Calibration(reference_ms)}
    timed: dict[tuple, float] = {}

    def timed_ms(key: tuple, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
        if key not in timed:
            timed[key] = measure_module(Preprocess(module), inputs, config, **ref).latency_ms
        return timed[key]

    out = []
    seen = cell_inputs(model, x)
    for i, (spec, cell, inputs) in enumerate(zip(specs, model.cells, seen, strict=True)):
        c, h = spec.channels, spec.resolution
        alone_inputs = tuple(torch.randn(config.batch, c, h, h) for _ in inputs)
        shapes = tuple(tuple(t.shape) for t in inputs)
        if shapes == tuple(tuple(t.shape) for t in alone_inputs):
            out.append(0.0)  # the same 1×1 convs on the same inputs as the label's
        else:
            alone = Block(space, spec.block_type, c, "fixed", choices=choices[spec.block_type])
            in_net = timed_ms(("network", spec.block_type, c, h, shapes), cell.preprocess, inputs)
            labelled = timed_ms(("alone", spec.block_type, c, h), alone.preprocess, alone_inputs)
            out.append(in_net - labelled)
        if on_cell is not None:
            on_cell(i + 1, len(specs))
    return out
