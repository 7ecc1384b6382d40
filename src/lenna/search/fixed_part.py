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


class _Fed(nn.Module):
    """A cell replaced by the output it gave, handed in as an input of the whole skeleton (not
    a constant: an ONNX export would fold the norms after a constant cell away). What the cell
    would have read is kept, so the skeleton can return it: otherwise ONNX Runtime drops the
    norms and preprocessing whose only reader was a cell."""

    def __init__(self) -> None:
        super().__init__()
        self.out: torch.Tensor | None = None
        self.seen: tuple[torch.Tensor, ...] = ()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.seen = inputs
        return self.out


class Skeleton(nn.Module):
    """The network with every cell replaced by its recorded output: ``forward(x, *outs)``
    returns the logits, then every tensor a cell would have read."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *outs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for cell, out in zip(self.net.cells, outs, strict=True):
            cell.out = out
        logits = self.net(x)
        return (logits, *(t for cell in self.net.cells for t in cell.seen))


def skeleton(space: SearchSpace, net: NetConfig, batch: int = 1) -> tuple[Skeleton, tuple]:
    """The network of shape ``net`` with recorded cells, and its inputs (an image batch,
    then each cell's recorded output)."""
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
    for i in range(len(outs)):
        model.cells[i] = _Fed()
    return Skeleton(model).eval(), (x, *(o.clone() for o in outs))


def measure_fixed_part(
    space: SearchSpace,
    net: NetConfig,
    config: MeasureConfig | None = None,
    reference_ms: float | None = None,
) -> float:
    """Latency (ms) of the network's fixed part under ``config`` (batch, threads, device), at
    the calibrated speed ``reference_ms`` when normalised."""
    config = config or MeasureConfig()
    model, inputs = skeleton(space, net, config.batch)
    cal = Calibration(reference_ms)
    return measure_module(model, inputs, config, space=space, calibration=cal).latency_ms
