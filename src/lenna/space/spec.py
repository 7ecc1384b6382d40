"""A search space as data: nodes, edges, op lists, how nodes combine, block shapes.

Everything downstream (blocks, features, measurement, predictors, search) reads a
:class:`SearchSpace`; a third space is one more instance in ``presets.py``, not new code.

Conventions shared by all spaces:

- nodes ``0 .. num_inputs-1`` are the block's inputs; every later node is the sum of one
  mixed edge from each earlier node, in order, so node ``j`` has ``j`` incoming edges;
- in a ``reduction`` block only edges leaving a block input downsample (stride 2) and use
  ``down_ops``; every other edge keeps resolution and uses ``ops``;
- architecture parameters α are one padded array ``(num_edges, max_ops)``: slot ``i`` of an
  edge is the ``i``-th op of that edge's list; slots past the list's end are ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from lenna.errors import InputError

BLOCK_TYPES = ("normal", "reduction")


@dataclass(frozen=True)
class Edge:
    """One mixed edge from node ``src`` to node ``dst`` (``index`` = its row in α)."""

    index: int
    src: int
    dst: int


@dataclass(frozen=True)
class SearchSpace:
    """A block/cell family. See the module docstring for the shared conventions."""

    name: str
    description: str
    num_inputs: int
    num_nodes: int
    ops: tuple[str, ...]
    down_ops: tuple[str, ...]
    output: str  # "last": the last node; "concat": all intermediate nodes along channels
    preprocess: bool  # DARTS: each input passes a 1×1 ReLU-conv-BN to the edge width first
    derive_rule: str  # "edge_argmax" (every edge keeps its best op) | "top2_non_none" (DARTS)
    reduction_channel_factor: int = 2

    # ---- structure -------------------------------------------------------------------
    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        out, k = [], 0
        for dst in range(self.num_inputs, self.num_inputs + self.num_nodes):
            for src in range(dst):
                out.append(Edge(k, src, dst))
                k += 1
        return tuple(out)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def max_ops(self) -> int:
        return max(len(self.ops), len(self.down_ops))

    @property
    def alpha_shape(self) -> tuple[int, int]:
        return (self.num_edges, self.max_ops)

    def is_down(self, block_type: str, edge: Edge) -> bool:
        """Whether ``edge`` downsamples in a block of ``block_type``."""
        return self.check_block_type(block_type) == "reduction" and edge.src < self.num_inputs

    def edge_ops(self, block_type: str, edge: Edge) -> tuple[str, ...]:
        """The candidate op names of ``edge`` in a block of ``block_type``."""
        return self.down_ops if self.is_down(block_type, edge) else self.ops

    def op_mask(self, block_type: str) -> np.ndarray:
        """Boolean ``(num_edges, max_ops)``: which α slots are real ops."""
        mask = np.zeros(self.alpha_shape, dtype=bool)
        for e in self.edges:
            mask[e.index, : len(self.edge_ops(block_type, e))] = True
        return mask

    # ---- shapes ----------------------------------------------------------------------
    def shapes(self, block_type: str, channels: int, resolution: int) -> dict[str, int]:
        """Channels and resolution at the block's input, edges and output."""
        self.check(block_type, channels, resolution)
        red = block_type == "reduction"
        width = channels * (self.reduction_channel_factor if red else 1)
        out_res = resolution // 2 if red else resolution
        out_ch = width * (self.num_nodes if self.output == "concat" else 1)
        return {
            "in_channels": channels,
            "edge_channels": width,
            "out_channels": out_ch,
            "in_resolution": resolution,
            "out_resolution": out_res,
        }

    # ---- features --------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Length of the encoded vector: is_normal, channels, E×K probabilities, resolution."""
        return 2 + self.num_edges * self.max_ops + 1

    def feature_names(self) -> list[str]:
        names = ["is_normal", "channels"]
        for e in self.edges:
            names += [f"p[{e.src}->{e.dst}][{i}]" for i in range(self.max_ops)]
        return [*names, "resolution"]

    # ---- validation ------------------------------------------------------------------
    def check_block_type(self, block_type: str) -> str:
        if block_type not in BLOCK_TYPES:
            raise InputError(
                f"unknown block type {block_type!r}; expected one of: {', '.join(BLOCK_TYPES)}"
            )
        return block_type

    def check(self, block_type: str, channels: int, resolution: int) -> None:
        """Refuse an unknown block type, channels < 1, or a resolution the block can't take."""
        self.check_block_type(block_type)
        if not _is_int(channels) or channels < 1:
            raise InputError(f"channels must be an integer >= 1, got {channels!r}")
        if not _is_int(resolution) or resolution < 1:
            raise InputError(f"resolution must be an integer >= 1, got {resolution!r}")
        if block_type == "reduction" and resolution % 2:
            raise InputError(
                f"a reduction block halves the resolution, so it must be even; got {resolution}"
            )

    def check_alphas(self, alphas: object) -> np.ndarray:
        """α as a float array of shape ``alpha_shape``, all finite, or an :class:`InputError`."""
        arr = np.asarray(_to_numpy(alphas), dtype=np.float64)
        if arr.shape != self.alpha_shape:
            raise InputError(
                f"alphas for space {self.name!r} must have shape {self.alpha_shape} "
                f"(edges × ops), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise InputError("alphas contain NaN or inf; expected finite logits")
        return arr

    # ---- identity --------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["ops"], d["down_ops"] = list(self.ops), list(self.down_ops)
        return d

    def definition_hash(self) -> str:
        """Short hash of the definition: a model or dataset of another definition is refused."""
        d = self.to_dict()
        d.pop("description")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _is_int(x: object) -> bool:
    try:
        return float(x) == int(x) and not math.isinf(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False


def _to_numpy(x: object) -> object:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return x
