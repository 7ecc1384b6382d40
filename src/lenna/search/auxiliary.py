"""The auxiliary head of DARTS's evaluation training: a second classifier at 2/3 depth.

Why: a 20-cell network trained from scratch gets a gradient into its lower cells straight
from a classifier on the output of the cell at index ``2 * cells // 3`` (the second
reduction; DARTS's ``model.py``, after NASNet); its loss is added with a weight (0.4 in
DARTS). It exists only while the network trains: it reads that cell's output through a
forward hook, is not a part of the network, and so is never timed, exported or counted in
its parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from lenna.search.network import Network


def auxiliary_index(cells: int) -> int:
    """The cell whose output the head reads (DARTS: ``i == 2 * layers // 3``)."""
    return 2 * cells // 3


class AuxiliaryHead(nn.Module):
    """DARTS's ``AuxiliaryHeadCIFAR``: ReLU, 5×5 average pool at stride 3 (8×8 → 2×2), 1×1
    conv to 128, BN, ReLU, a conv to 768 over what is left of the image, BN, ReLU, linear.
    Below 5×5 the pool is skipped; the last conv always covers the whole pooled image."""

    def __init__(self, channels: int, resolution: int, num_classes: int) -> None:
        super().__init__()
        pooled = (resolution - 5) // 3 + 1 if resolution >= 5 else resolution
        pool = (
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
            if resolution >= 5
            else nn.Identity()
        )
        self.features = nn.Sequential(
            nn.ReLU(),  # not in place: the input is the network's own activation
            pool,
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class Auxiliary(nn.Module):
    """An :class:`AuxiliaryHead` fed by a hook on ``net``'s cell at 2/3 depth: after a forward
    pass of ``net`` in training mode, :meth:`logits` classifies what that cell gave."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        i = auxiliary_index(len(net.cells))
        spec = net.specs[i]
        shapes = net.space.shapes(spec.block_type, spec.channels, spec.resolution)
        self.index = i
        self.head = AuxiliaryHead(
            shapes["out_channels"], shapes["out_resolution"], net.net.num_classes
        )
        self._seen: torch.Tensor | None = None
        # the cell's output after its BN: what the next cell reads
        self._hook = net.norms[i].register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        self._seen = out if module.training else None

    def logits(self) -> torch.Tensor:
        """The head's logits for the last training-mode forward pass of the network."""
        if self._seen is None:
            raise RuntimeError("no training-mode forward pass of the network to read")
        x, self._seen = self._seen, None
        return self.head(x)

    def remove(self) -> None:
        """Detach the hook: the network is as it was."""
        self._hook.remove()
        self._seen = None
