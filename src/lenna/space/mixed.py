"""A mixed edge: the candidate ops of one edge, run in one of three modes.

- ``weighted`` (DARTS): every op runs; output = Σ softmax(α)_i · op_i(x). The ops' outputs
  are stacked and weighted in one product, and ``none`` (whose output is zero) is left out of
  it: the same sum with a few kernels per edge instead of three per op, which is what a GPU
  step at DARTS's size waits on (docs/gpu.md).
- ``gated`` (ProxylessNAS binary gates): :meth:`MixedEdge.reset_gates` samples ONE op from
  softmax(α) and only that op runs, which is what makes the latency of a sampled path real.
  When gradients are on, the output is scaled by ``1 + p - p.detach()`` (value 1) so α still
  receives a straight-through gradient; under ``inference_mode`` nothing extra runs.
- ``fixed``: a derived architecture; only the chosen op is even built.

A sampled or chosen ``none`` op means the edge is absent: the block calls nothing for it and
adds nothing, exactly as the derived cell (which drops that edge) runs. Labels are the time
of the cell as deployed (docs/measurement.md); the ``none`` module exists only for the
``weighted`` mixture, where its output is the zero it stands for.

α are not stored here: the block owns them (they may be shared between cells) and passes
each edge its row of probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lenna.errors import InputError
from lenna.space.registry import build_op

MODES = ("weighted", "gated", "fixed")
NONE_OP = "none"  # the op that stands for an absent edge
LAST = torch.channels_last


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; expected one of: {', '.join(MODES)}")
    return mode


class MixedEdge(nn.Module):
    """Candidate ops ``op_names`` from ``c_in`` to ``c_out`` channels at ``stride``."""

    def __init__(
        self,
        op_names: Sequence[str],
        c_in: int,
        c_out: int,
        stride: int,
        mode: str = "weighted",
        fixed_op: str | None = None,
    ) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.op_names = tuple(op_names)
        self.stride = stride
        if mode == "fixed":
            if fixed_op not in self.op_names:
                raise InputError(
                    f"op {fixed_op!r} is not a candidate on this edge; "
                    f"expected one of: {', '.join(self.op_names)}"
                )
            self.active: int | None = self.op_names.index(fixed_op)
            self.ops = nn.ModuleList([build_op(fixed_op, c_in, c_out, stride)])
        else:
            self.active = None
            self.ops = nn.ModuleList(build_op(n, c_in, c_out, stride) for n in self.op_names)
        # the weighted sum's terms: every op but `none` (a zero term), and their probabilities'
        # positions (a slice when they are contiguous, as in DARTS's list: no index per step)
        self._terms = [i for i, n in enumerate(self.op_names) if n != NONE_OP]
        t = self._terms
        contiguous = bool(t) and t == list(range(t[0], t[-1] + 1))
        self._term_probs: slice | None = slice(t[0], t[-1] + 1) if contiguous else None
        # otherwise an index that moves with the module: a list would be copied to the GPU
        # at every step
        self.register_buffer("_term_index", torch.tensor(t, dtype=torch.long), persistent=False)

    def reset_gates(self, probs: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Sample the one op to run from ``probs`` (this edge's softmax(α)); returns its index."""
        if self.mode != "gated":
            raise InputError(f"reset_gates needs mode 'gated', this edge is {self.mode!r}")
        p = probs.detach().to("cpu", torch.float64)[: len(self.op_names)]
        self.active = int(torch.multinomial(p, 1, generator=generator))
        return self.active

    @property
    def active_op(self) -> str | None:
        return None if self.active is None else self.op_names[self.active]

    @property
    def absent(self) -> bool:
        """Whether the op that runs now is ``none``: the edge is skipped, as in a derived cell."""
        return self.active is not None and self.op_names[self.active] == NONE_OP

    def forward(self, x: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "fixed":
            return self.ops[0](x)
        if self.mode == "weighted":
            if probs is None:
                raise ValueError("weighted mode needs the edge's probabilities")
            return self._weighted(x, probs)
        if self.active is None:
            raise InputError("gated edge has no sampled op: call reset_gates() first")
        out = self.ops[self.active](x)
        if probs is not None and probs.requires_grad and torch.is_grad_enabled():
            p = probs[self.active]
            out = out * (1 + p - p.detach())
        return out

    def _weighted(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Σ_i probs_i · op_i(x) over the ops that are not ``none``, as one product."""
        if not self._terms:  # only `none`: the zero it stands for
            return self.ops[0](x) * probs[0]
        outs = [self.ops[i](x) for i in self._terms]
        w = (
            probs[self._term_probs]
            if self._term_probs is not None
            else probs.index_select(0, self._term_index)
        )
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=LAST):
            # channels-last: stack NHWC views so the product keeps the layout (no copies)
            nhwc = torch.stack([o.permute(0, 2, 3, 1) for o in outs])
            return torch.tensordot(w.to(nhwc.dtype), nhwc, dims=1).permute(0, 3, 1, 2)
        stacked = torch.stack(outs)
        return torch.tensordot(w.to(stacked.dtype), stacked, dims=1)
