"""``M`` small MLPs of one shape evaluated as one: weights stacked on a leading member axis.

An ensemble of tiny networks trained in a Python loop costs ``M`` times the per-step
overhead, which dominates at this size; batched matrix products make ``M`` members cost
about what one does.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


class StackedMLP(nn.Module):
    """``(..., n_in)`` → ``(M, ..., n_out)``: ``M`` independent MLPs with SiLU between layers,
    each initialised as :class:`torch.nn.Linear` initialises (uniform in ±1/√fan_in)."""

    def __init__(self, members: int, sizes: list[int], dtype: torch.dtype = torch.float64):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in pairwise(sizes):
            bound = 1 / math.sqrt(n_in)
            w = torch.empty(members, n_in, n_out, dtype=dtype).uniform_(-bound, bound)
            b = torch.empty(members, 1, n_out, dtype=dtype).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    @property
    def in_features(self) -> int:
        return self.weights[0].shape[1]

    @property
    def out_features(self) -> int:
        return self.weights[-1].shape[2]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = z.reshape(1, -1, z.shape[-1]).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = nn.functional.silu(h)
        return h.reshape(self.members, *lead, h.shape[-1])

    @staticmethod
    def single_to_stacked(linear: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        """The state of a one-member stack from :class:`torch.nn.Linear` layers'
        ``(weight, bias)``: how a model saved before members existed is read."""
        state = {}
        for i, (w, b) in enumerate(linear):
            state[f"weights.{i}"] = w.T.unsqueeze(0).contiguous()
            state[f"biases.{i}"] = b.reshape(1, 1, -1).clone()
        return state
