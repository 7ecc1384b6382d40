"""A block/cell of any space, built from its :class:`~lenna.space.spec.SearchSpace`.

One class serves both presets: the space says how many inputs, nodes and edges there are,
which op list each edge gets, whether inputs are preprocessed (DARTS) and how the output is
formed (last node or concat). This is the module that is measured, predicted and searched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lenna.errors import InputError
from lenna.space import layers
from lenna.space.encode import encode, probabilities
from lenna.space.mixed import NONE_OP, MixedEdge, check_mode
from lenna.space.spec import SearchSpace


class Block(nn.Module):
    """A block of ``space`` with input ``channels``.

    ``alphas`` (``space.alpha_shape``): logits; pass an ``nn.Parameter`` to share it between
    cells, an array to set values, or nothing for uniform. ``choices`` (``fixed`` mode): one op
    name per edge, ``None`` (or ``"none"``) drops the edge. ``in_channels``/``reduction_prev``
    describe the inputs when the block sits in a network (DARTS preprocessing); standalone,
    every input has ``channels`` channels at the same resolution.
    """

    def __init__(
        self,
        space: SearchSpace,
        block_type: str,
        channels: int,
        mode: str = "weighted",
        alphas: object = None,
        choices: Sequence[str | None] | None = None,
        in_channels: Sequence[int] | None = None,
        reduction_prev: bool = False,
    ) -> None:
        super().__init__()
        space.check(block_type, channels, 2)
        self.space, self.block_type, self.channels = space, block_type, int(channels)
        self.mode = check_mode(mode)
        width = space.shapes(block_type, self.channels, 2)["edge_channels"]
        self.alphas = self._make_alphas(alphas) if mode != "fixed" else None
        if mode == "fixed":
            choices = [None if c == NONE_OP else c for c in (choices or [])] or None
            self._check_choices(choices)
        self._width = width
        self._stride = 2 if block_type == "reduction" else 1
        self.preprocess = self._make_preprocess(in_channels, width, reduction_prev)
        edge_in = width if space.preprocess else self.channels
        self.edges = nn.ModuleDict()
        for e in space.edges:
            if mode == "fixed" and choices[e.index] is None:
                continue
            down = space.is_down(block_type, e)
            self.edges[str(e.index)] = MixedEdge(
                space.edge_ops(block_type, e),
                edge_in if e.src < space.num_inputs else width,
                width,
                2 if down else 1,
                mode,
                fixed_op=choices[e.index] if mode == "fixed" else None,
            )
        # per node, its incoming (edge index, source node, edge module): the forward pass
        # (which is what gets timed) then does no searching or string keys
        self._wiring = [
            [
                (e.index, e.src, self.edges[str(e.index)])
                for e in space.edges
                if e.dst == node and str(e.index) in self.edges
            ]
            for node in range(space.num_inputs, space.num_inputs + space.num_nodes)
        ]

    # ---- construction helpers --------------------------------------------------------
    def _make_alphas(self, alphas: object) -> nn.Parameter:
        if isinstance(alphas, nn.Parameter):
            if tuple(alphas.shape) != self.space.alpha_shape:
                self.space.check_alphas(alphas)  # raises with the expected shape
            return alphas
        if alphas is None:
            return nn.Parameter(torch.zeros(self.space.alpha_shape))
        arr = self.space.check_alphas(alphas)
        return nn.Parameter(torch.as_tensor(arr, dtype=torch.float32))

    def _check_choices(self, choices: Sequence[str | None] | None) -> None:
        if choices is None or len(choices) != self.space.num_edges:
            n = None if choices is None else len(choices)
            raise InputError(
                f"fixed mode needs {self.space.num_edges} choices (one per edge), got {n}"
            )
        for node in range(self.space.num_inputs, self.space.num_inputs + self.space.num_nodes):
            if all(choices[e.index] is None for e in self.space.edges if e.dst == node):
                raise InputError(f"node {node} has no incoming edge in the given choices")

    def _make_preprocess(
        self, in_channels: Sequence[int] | None, width: int, reduction_prev: bool
    ) -> nn.ModuleList:
        n = self.space.num_inputs
        in_channels = list(in_channels) if in_channels is not None else [self.channels] * n
        if len(in_channels) != n:
            raise InputError(f"space {self.space.name!r} takes {n} inputs, got {len(in_channels)}")
        if not self.space.preprocess:
            return nn.ModuleList()
        mods = []
        for i, c in enumerate(in_channels):
            if i == 0 and reduction_prev:
                mods.append(layers.FactorizedReduce(c, width))
            else:
                mods.append(layers.relu_conv_bn(c, width, 1, 1))
        return nn.ModuleList(mods)

    # ---- α and gates -----------------------------------------------------------------
    def probabilities(self) -> torch.Tensor:
        """softmax(α) per edge, ``(num_edges, max_ops)``, padded slots 0. On a GPU finite α
        are not checked here (the check would stall every pass; a search checks α once an
        epoch)."""
        a = self._require_alphas()
        return probabilities(self.space, self.block_type, a, check_values=a.device.type == "cpu")

    def _require_alphas(self) -> nn.Parameter:
        if self.alphas is None:
            raise InputError("a fixed block has no architecture parameters")
        return self.alphas

    def features(self, resolution: int) -> np.ndarray:
        """The encoded features of this block at ``resolution``, from its own α."""
        alphas = self._require_alphas().detach().cpu().numpy()
        return encode(self.space, self.block_type, self.channels, resolution, alphas)

    def reset_gates(self, generator: torch.Generator | None = None) -> list[int]:
        """Sample one op per edge from softmax(α); returns the sampled slot per edge. α are
        checked here on any device: the draw reads them back to the host anyway."""
        a = self._require_alphas()
        probs = probabilities(self.space, self.block_type, a, check_values=True).detach()
        return [edge.reset_gates(probs[int(k)], generator) for k, edge in self.edges.items()]

    def active_ops(self) -> list[str | None]:
        """The op each edge runs now (``None``: dropped, or gated and not yet sampled)."""
        names: list[str | None] = [None] * self.space.num_edges
        for k, edge in self.edges.items():
            names[int(k)] = edge.active_op
        return names

    # ---- forward ---------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sp = self.space
        if len(inputs) != sp.num_inputs:
            raise InputError(f"space {sp.name!r} takes {sp.num_inputs} inputs, got {len(inputs)}")
        states = list(inputs)
        if self.preprocess:
            states = [pre(x) for pre, x in zip(self.preprocess, inputs, strict=True)]
        probs = None
        if self.mode == "weighted" or (
            self.mode == "gated" and torch.is_grad_enabled() and self.alphas.requires_grad
        ):
            probs = self.probabilities()
        for incoming in self._wiring:
            total = None
            for k, src, edge in incoming:
                if edge.absent:  # a sampled `none`: the derived cell has no such edge
                    continue
                out = edge(states[src], None if probs is None else probs[k])
                total = out if total is None else total + out
            states.append(total if total is not None else self._empty_node(states))
        if sp.output == "concat":
            return torch.cat(states[sp.num_inputs :], dim=1)
        return states[-1]

    def _empty_node(self, states: list[torch.Tensor]) -> torch.Tensor:
        """A node whose sampled inputs are all ``none``: zeros of the node's shape. No derived
        cell has one (every rule keeps an input per node); a gated path can, and then its
        value is what the weighted mixture's ``none`` ops would sum to."""
        x = states[self.space.num_inputs - 1]
        n, _, h, w = x.shape
        s = self._stride
        return x.new_zeros(n, self._width, -(-h // s), -(-w // s))
