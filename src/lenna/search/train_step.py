"""One training step of a derived network — forward (with the auxiliary head), loss,
backward, clipping, SGD — as :mod:`lenna.search.train` takes it every batch, eagerly or
replayed as a CUDA graph (:class:`~lenna.search.replay.Replayed`).

Why a graph: a 20-cell derived network's step is thousands of small kernels, launch-bound on
a large GPU as the search step was. A graph bakes in the learning rate and the drop-path
probability, both set once an epoch, so :func:`lenna.search.train.train_network` makes a new
step each epoch. Drop-path's masks are drawn inside the graph from the GPU's generator, a
new draw each replay. Crop, flip and cutout stay outside (they draw from the epoch's
generator on the CPU). Opt-in (``TrainRecipe.cuda_graph``) until it has run on a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from lenna.search.auxiliary import Auxiliary
from lenna.search.network import Network
from lenna.search.replay import FIRST_EAGER, Inputs, Replayed


class TrainStep(Replayed):
    """``step(x, y)`` → (mean loss of the main classifier, correct predictions)."""

    what = "the training step"

    def __init__(
        self,
        net: Network,
        aux: Auxiliary | None,
        opt: torch.optim.Optimizer,
        params: list[nn.Parameter],
        aux_weight: float,
        grad_clip: float,
        amp: torch.dtype | None,
        capture: bool = False,
        eager_steps: int = FIRST_EAGER,
    ) -> None:
        super().__init__(next(net.parameters()).device, capture, eager_steps)
        self.net, self.aux, self.opt, self.params = net, aux, opt, params
        self.aux_weight, self.grad_clip, self.amp = aux_weight, grad_clip, amp

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        loss, correct = self.run({"x": x, "y": y}).tolist()  # the step's one read-back
        return loss, int(correct)

    def _body(self, inp: Inputs) -> torch.Tensor:
        x, y = inp["x"], inp["y"]
        mixed = torch.autocast(x.device.type, dtype=self.amp) if self.amp else None
        with mixed or contextlib.nullcontext():
            logits = self.net(x).float()
            aux_logits = self.aux.logits().float() if self.aux is not None else None
        loss = main = F.cross_entropy(logits, y)
        if aux_logits is not None:
            loss = loss + self.aux_weight * F.cross_entropy(aux_logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        correct = (logits.argmax(1) == y).sum()
        return torch.stack([main.detach().double(), correct.double()])
