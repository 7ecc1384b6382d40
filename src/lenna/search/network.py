"""The search network: stem → N × (cell → BN) → global pool → classifier.

One class builds the supernet (``weighted``/``gated`` mixed edges, one α per cell type shared
by every cell of that type) and the derived network (``fixed``: only the chosen ops exist).
Reductions sit at 1/3 and 2/3 of the depth, as in DARTS. Each cell knows its own
(block type, channels, resolution): the latency predictor is asked exactly that.

Each cell's output is batch-normalised (affine-free in the supernet, as DARTS's ops are): a
seed-block node is an un-normalised sum of up to five ReLU outputs, and in a mixed edge the
average of many such outputs is mostly a constant; on MNIST the supernet's accuracy after 40
steps rose from chance to ~45 % with it. The BN is outside the cell, so what is measured and
predicted is the cell itself.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lenna.errors import InputError
from lenna.limits import MAX_CELLS
from lenna.space import Block, SearchSpace

CELL_TYPES = ("normal", "reduction")


@dataclass(frozen=True)
class CellSpec:
    """Where a cell sits: what the latency predictor is asked about it."""

    index: int
    block_type: str
    channels: int  # the block's `channels` (for a reduction: its input width)
    resolution: int  # input resolution


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network. ``channels`` is the first cells' width; reductions double it."""

    channels: int = 8
    cells: int = 3
    in_channels: int = 1
    num_classes: int = 10
    resolution: int = 32
    stem_stride: int = 2  # sized for 2 CPU cores: cells at 16×16 cost ~6× less than at 32×32
    stem_multiplier: int = 1  # the stem's width over ``channels`` (DARTS: 3; needs preprocessing)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):  # 4.5, "4", true
                raise InputError(f"network {name} must be a whole number, got {v!r}")
            object.__setattr__(self, name, int(v))  # a numpy integer saves as JSON too
            if v < 1:
                raise InputError(f"network {name} must be >= 1, got {v}")
        if self.cells > MAX_CELLS:
            raise InputError(f"network cells must be <= {MAX_CELLS}, got {self.cells}")
        if self.stem_stride not in (1, 2):
            raise InputError(f"stem stride must be 1 or 2, got {self.stem_stride}")
        res = self.resolution // self.stem_stride
        if self.resolution % self.stem_stride or res % (2 ** len(reduction_indices(self.cells))):
            raise InputError(
                f"resolution {self.resolution} cannot pass the stem and the reductions evenly"
            )

    @property
    def cell_resolution(self) -> int:
        """Resolution at the first cell's input."""
        return self.resolution // self.stem_stride

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> NetConfig:
        if not isinstance(d, Mapping):
            raise InputError(f"malformed network config: not an object of sizes (got {d!r})")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(
                f"malformed network config: unknown field {unknown[0]!r} (from a newer LENNA?)"
            )
        merged = {**LATER, **d}  # a network saved before a field existed has its default
        missing = [k for k in cls.__dataclass_fields__ if k not in merged]
        if missing:
            raise InputError(f"malformed network config: no {missing[0]!r}")
        try:
            return cls(**{k: merged[k] for k in cls.__dataclass_fields__})
        except InputError as e:
            raise InputError(f"malformed network config: {e}") from None


LATER = {"stem_multiplier": 1}  # fields added after networks were first saved, and their values


def reduction_indices(cells: int) -> set[int]:
    """DARTS's placement: reductions at 1/3 and 2/3 of the depth (fewer cells: fewer reductions)."""
    return {i for i in (cells // 3, 2 * cells // 3) if 0 < i < cells} or (
        {cells - 1} if cells > 1 else set()
    )


def cell_specs(space: SearchSpace, net: NetConfig) -> list[CellSpec]:
    """Each cell's (block type, channels, resolution) in the network of ``net``."""
    red = reduction_indices(net.cells)
    width, res, out = net.channels, net.cell_resolution, []
    for i in range(net.cells):
        if i in red:
            out.append(CellSpec(i, "reduction", width, res))
            width, res = width * space.reduction_channel_factor, res // 2
        else:
            out.append(CellSpec(i, "normal", width, res))
    return out


class Network(nn.Module):
    """A classifier made of cells of ``space``.

    ``mode`` ``weighted``/``gated``: a supernet whose α (``self.alphas[block_type]``) are
    shared by all cells of a type. ``fixed``: ``choices[block_type]`` is one op (or ``None``)
    per edge — a derived architecture.
    """

    def __init__(
        self,
        space: SearchSpace,
        net: NetConfig,
        mode: str = "weighted",
        choices: Mapping[str, Sequence[str | None]] | None = None,
    ) -> None:
        super().__init__()
        self.space, self.net, self.mode = space, net, mode
        self.specs = cell_specs(space, net)
        types = sorted({s.block_type for s in self.specs})
        if mode == "fixed":
            missing = [t for t in types if choices is None or t not in choices]
            if missing:
                raise InputError(f"a fixed network needs choices for cell types {missing}")
            self.alphas = nn.ParameterDict()
        else:
            self.alphas = nn.ParameterDict(
                {t: nn.Parameter(1e-3 * torch.randn(space.alpha_shape)) for t in types}
            )
        c = net.channels * net.stem_multiplier
        if net.stem_multiplier != 1 and not space.preprocess:
            raise InputError(
                f"space {space.name!r} has no input preprocessing: its first cell takes the "
                f"stem's width, so the stem multiplier must be 1 (got {net.stem_multiplier})"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(net.in_channels, c, 3, net.stem_stride, 1, bias=False), nn.BatchNorm2d(c)
        )
        self.cells = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = [c] * space.num_inputs  # channels of the inputs of the next cell, oldest first
        reduction_prev = False
        for s in self.specs:
            block = Block(
                space,
                s.block_type,
                s.channels,
                mode,
                alphas=None if mode == "fixed" else self.alphas[s.block_type],
                choices=choices[s.block_type] if mode == "fixed" else None,
                in_channels=prev[-space.num_inputs :] if space.preprocess else None,
                reduction_prev=reduction_prev,
            )
            self.cells.append(block)
            out_c = space.shapes(s.block_type, s.channels, s.resolution)["out_channels"]
            self.norms.append(nn.BatchNorm2d(out_c, affine=mode == "fixed"))
            prev = [*prev, out_c]
            reduction_prev = s.block_type == "reduction"
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev[-1], net.num_classes)

    def weights(self) -> list[nn.Parameter]:
        """The network weights (everything but α)."""
        ids = {id(p) for p in self.alphas.values()}
        return [p for p in self.parameters() if id(p) not in ids]

    def reset_gates(self, generator: torch.Generator | None = None) -> None:
        """Gated mode: sample one path per edge of every cell (cells of a type share α, not
        paths)."""
        for cell in self.cells:
            cell.reset_gates(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        states = [x] * self.space.num_inputs
        for cell, norm in zip(self.cells, self.norms, strict=True):
            out = norm(cell(*states[-self.space.num_inputs :]))
            states = [*states[1:], out] if self.space.num_inputs > 1 else [out]
        return self.classifier(self.pool(states[-1]).flatten(1))


def cell_inputs(net: Network, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The inputs each cell receives in a forward pass of ``x`` (captured by hooks)."""
    seen: list[tuple[torch.Tensor, ...]] = []
    hooks = [
        c.register_forward_pre_hook(lambda m, args: seen.append(tuple(a.clone() for a in args)))
        for c in net.cells
    ]
    try:
        with torch.inference_mode():
            net.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def network_bytes(space: object, net: object, mode: str, batch: int) -> int:
    """A network's weights (×4 with gradients and SGD momentum) and the activations a training
    step keeps (every op of every edge in ``weighted`` mode, one per edge otherwise)."""
    from lenna.memory import parameter_bytes

    choices = None
    if mode == "fixed":
        choices = {
            bt: [space.edge_ops(bt, e)[-1] for e in space.edges]  # type: ignore[attr-defined]
            for bt in ("normal", "reduction")
        }
    weights = parameter_bytes(lambda: Network(space, net, mode, choices), what="the network")
    ops = space.max_ops if mode == "weighted" else 1  # type: ignore[attr-defined]
    acts = 0
    for s in cell_specs(space, net):
        sh = space.shapes(s.block_type, s.channels, s.resolution)  # type: ignore[attr-defined]
        out_res = sh["out_resolution"]
        acts += sh["edge_channels"] * out_res**2 * (space.num_edges * ops + space.num_nodes)  # type: ignore[attr-defined]
    return 4 * weights + 4 * batch * acts
