"""The part of a network outside its cells — stem, the BN after each cell, pooling and
classifier — timed once per network shape.

The predictor models cells; the user deploys the whole network. The fixed part does not depend
on which ops the cells hold (only on the network's shape), so it is measured once and added:
the network is run with every cell replaced by its recorded output, which keeps the forward
loop, the stem, the norms, the pooling and the classifier exactly as the derived network runs
them, and nothing of the cells.
"""

from __future__ import annotations

import torch
from torch import nn

from lenna.measure.config import MeasureConfig
from lenna.measure.fixed import measure_module
from lenna.measure.reference import Calibration
from lenna.search.network import NetConfig, Network
from lenna.space import SearchSpace, derive


class _Recorded(nn.Module):
    """A cell replaced by the output it gave: returns that tensor, whatever its inputs."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("out", out)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.out


def skeleton(space: SearchSpace, net: NetConfig, batch: int = 1) -> tuple[Network, torch.Tensor]:
    """The network of shape ``net`` with recorded cells, and an input for it."""
    torch.manual_seed(0)
    zeros = torch.zeros(space.alpha_shape, dtype=torch.float64)
    choices = {bt: derive(space, bt, zeros) for bt in ("normal", "reduction")}
    model = Network(space, net, "fixed", choices).eval()
    x = torch.randn(batch, net.in_channels, net.resolution, net.resolution)
    outs: list[torch.Tensor] = []
    hooks = [c.register_forward_hook(lambda m, a, o: outs.append(o.detach())) for c in model.cells]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    for i, o in enumerate(outs):
        model.cells[i] = _Recorded(o.clone())
    return model, x


def measure_fixed_part(
    space: SearchSpace,
    net: NetConfig,
    config: MeasureConfig | None = None,
    reference_ms: float | None = None,
) -> float:
    """Latency (ms) of the network's fixed part under ``config`` (batch, threads, device), at
    the calibrated speed ``reference_ms`` when normalised."""
    config = config or MeasureConfig()
    model, x = skeleton(space, net, config.batch)
    cal = Calibration(reference_ms)
    return measure_module(model, (x,), config, space=space, calibration=cal).latency_ms
