"""``additive``: the additive model's structure, with the op costs learned from block labels.

A label is an expectation over paths, and a path's latency is close to the sum of its ops,
so ``E[L] ≈ Σ_e Σ_i p_ei · L_i(kind_e, C, H) + overhead(C, H)`` holds for *any* α. The op
table measures each ``L_i`` alone, which misses what an op costs inside a block (dispatch,
cache, the node sums). Here a small MLP maps (block type, log C, log H) to the log cost of
every op on a keep-resolution and on a downsampling edge, plus the block's own overhead;
each edge also gets a learned scale. The prediction is linear in the probabilities, so it is
exact wherever latency is additive, differentiable in α, and needs no op table.

``edge_scale="shaped"`` lets each edge's scale depend on (block type, C, H) too (the MLP
gets ``E`` more outputs): edges that see other channel counts or resolutions than their
kind's curve assumes (node concatenations, the reduction's later nodes) can then differ by
shape, at the price of more to fit. ``"constant"`` (default) keeps one scale per edge.

``align`` (default ``"auto"``): the shape MLP also sees, for each multiple ``m``, how much
work padding the edges' channel count (``C``, or ``2C`` in a reduction) up to a multiple of
``m`` adds, ``log(⌈w/m⌉·m / w)``. Blocked CPU kernels work on groups of 8 or 16 channels, so
latency need not be smooth in ``C``; the smooth model missed some blocks by 10–15 % in both
directions. ``"auto"`` is ``[8, 16]`` for PyTorch labels and ``[8, 16, 32, 64]`` for ONNX
Runtime's: its NCHWc convolutions compute up to four channel blocks per pass (a filter set:
32 channels on AVX2, 64 on AVX-512), so a width that leaves a ragged last set (80 = 64 + 16)
pays for a nearly full one. docs/predictors.md has the measured effect. ``[]`` (or ``0``) is
the model without it, as saved before the option.

``divisible`` (default ``"auto"``): for each multiple ``m``, an input that is 1 where the
edges' width is a multiple of ``m`` and 0 elsewhere. A runtime may pick a different kernel by
divisibility, a step no padding overhead describes: under ONNX Runtime on an AVX2 CPU a
``sep_conv_3x3`` at C = 57 or 63 took 2.9–3× its time at 56 or 64 (its blocked kernels
need a multiple of 8 channels), while the padding overhead of 63 is nearly that of 64.
``"auto"`` is ``[4, 8, 16]`` for a dataset timed in ONNX Runtime and ``[]`` for one timed in
PyTorch, where their effect was mixed and small (docs/predictors.md has both).

``shared`` (default ``"auto"``): per node with outgoing edges and per shareable first layer
(:func:`lenna.space.op_kinds.shared_leads`: DARTS's convolutions all start with a ReLU, a pool
is all pool), a cost paid once if *any* edge out of the node starts with it. ONNX Runtime's
graph optimiser merges such common layers: a DARTS path with three ReLU-led edges out of one
node runs one ReLU, not three, so its latency is not the sum of its edges'. Edges are drawn
independently, so the chance ``1 − Π_e (1 − q_e)`` is exact and the prediction stays an exact
expectation over paths, linear in each edge's probabilities. ``"auto"`` turns it on in any
space with such layers, under either runtime. Under ONNX Runtime they took ``darts``
held-out rows within ±10 % from 89.1 to 95.0 % and from 88.4 to 93.8 % on two split seeds
(``darts-ort-v4-zen5.db``). In ``lenna`` each lead starts one op only (its pools), which random
α seldom draw twice out of a node but a search under a latency term does: on
``lenna-ort-v4-zen5.db``'s cells of mostly cheap ops the terms took cells within ±5 % from
68–71 % to 82–83 % on three split seeds. PyTorch eager merges nothing, yet on its files the
terms fitted cells of mostly cheap ops better in six of six comparisons and took the eager
``lenna`` trade-off's worst derived cell from +23.7 % to +11.6 % (docs/predictors.md).

``members`` (default 5): the model is an ensemble of that many such networks, started from
different random weights, trained side by side on the same batches (one loss and one early
stop per member) and averaged in ms, which keeps the prediction linear in the probabilities.
One network's early stop is a matter of luck: on ``lenna-v2.db`` five random starts of the
single model ended at 3.2–4.2 % held-out MAPE, their mean at 3.1 % (docs/predictors.md).
The members are stacked into batched weights, so training five costs a few times one, not
five. A model saved before the option loads as one member.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lenna.errors import InputError
from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.mlp import train_log_target
from lenna.predict.stacked import StackedMLP
from lenna.space import SearchSpace
from lenna.space.op_kinds import has_shared_lead, shared_leads

DEFAULTS = {
    "hidden": [128, 128],
    "lr": 3e-3,
    "weight_decay": 0.0,
    "epochs": 2000,
    "patience": 200,
    "batch_size": 64,
    "edge_scale": "constant",
    "align": "auto",
    "divisible": "auto",
    "members": 5,
    "shared": "auto",
}
EDGE_SCALES = ("constant", "shaped")
AUTO_DIVISIBLE = {"onnxruntime": [4, 8, 16]}  # per backend; any other: none
AUTO_ALIGN = {"onnxruntime": [8, 16, 32, 64]}  # per backend; any other: the eager default
EAGER_ALIGN = [8, 16]
MAX_ALIGN = 4096
MAX_MEMBERS = 64


class AdditiveNet(nn.Module):
    """Encoded rows ``(n, F)`` → log ms ``(n, 1)``, the members' mean (module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        hidden: list[int],
        edge_scale: str = "constant",
        align: Any = (),  # channel multiples, as `_align` reads them
        members: int = 1,
        divisible: Any = (),  # channel multiples, as `_align` reads them
        shared: bool = False,
    ) -> None:
        super().__init__()
        E, K = space.num_edges, space.max_ops
        self.E, self.K, self.shaped = E, K, edge_scale == "shaped"
        self.hidden = [int(h) for h in hidden]
        self.align = _align(align)
        self.divisible = _align(divisible, "divisible")
        self.members = _members(members)
        self.factor = float(space.reduction_channel_factor)
        n_shape = 3 + len(self.align) + len(self.divisible)
        down = [float(space.is_down("reduction", e)) for e in space.edges]
        self.register_buffer("down", torch.tensor(down, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(n_shape, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_shape, dtype=torch.float64))
        self.shared = bool(shared)
        self.groups, self.sources = _share_groups(space) if self.shared else ([], [])
        G, S = len(self.groups), len(self.sources)
        if self.shared:
            self.register_buffer("lead", _lead_members(space, self.groups))  # (2, E, K, G)
            # each node's outgoing edges, padded (weight 0): an index on the model's device, so
            # a pass copies nothing from the host (a search step on a GPU must not wait for it)
            width = max(len(e) for e in self.sources)
            index = torch.tensor([e + [0] * (width - len(e)) for e in self.sources])
            real = torch.tensor([[1.0] * len(e) + [0.0] * (width - len(e)) for e in self.sources])
            self.register_buffer("out_index", index, persistent=False)
            self.register_buffer("out_real", real.to(torch.float64), persistent=False)
        n_out = 2 * K + 1 + G + (E if self.shaped else 0)
        self.curves = StackedMLP(self.members, [n_shape, *hidden, n_out])
        self.edge_log_scale = nn.Parameter(torch.zeros(self.members, E, dtype=torch.float64))
        if self.shared:
            self.source_log_scale = nn.Parameter(torch.zeros(self.members, S, dtype=torch.float64))

    def raw_shape(self, X: torch.Tensor) -> torch.Tensor:
        """(is_normal, log C, log H, and per multiple in ``align`` the padding overhead of the
        edges' width: ``C`` in a normal block, ``C × reduction_channel_factor`` in a reduction;
        then per multiple in ``divisible`` whether that width is one of it)."""
        normal, c = X[..., :1], X[..., 1:2]
        w = c * (normal + (1 - normal) * self.factor)
        pads = [torch.log(torch.ceil(w / m) * m / w) for m in self.align]
        steps = [(torch.remainder(torch.round(w), m) == 0).to(w.dtype) for m in self.divisible]
        return torch.cat([normal, torch.log(c), torch.log(X[..., -1:]), *pads, *steps], dim=-1)

    def shape_inputs(self, X: torch.Tensor) -> torch.Tensor:
        return (self.raw_shape(X) - self.shift) / self.scale

    def member_outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Each member's log ms, ``(M, ...)``: what training fits, one loss per member."""
        E, K, M = self.E, self.K, self.members
        probs = X[..., 2:-1].reshape(*X.shape[:-1], E, K)
        out = self.curves(self.shape_inputs(X))  # (M, ..., 2K + 1 [+ E]) log ms
        same, down, overhead = out[..., :K], out[..., K : 2 * K], out[..., 2 * K]
        lead = (M,) + (1,) * (X.dim() - 1)
        edge_scale = self.edge_log_scale.reshape(*lead, E)
        if self.shaped:
            edge_scale = edge_scale + out[..., 2 * K + 1 + len(self.groups) :]
        is_down = self.down * (1 - X[..., :1])  # (..., E): downsampling only in reductions
        cost = torch.where(is_down[..., None] > 0.5, down[..., None, :], same[..., None, :])
        cost = torch.exp(cost + edge_scale[..., None])  # (M, ..., E, K) ms
        total = (probs * cost).sum(dim=(-1, -2)) + torch.exp(overhead)
        if self.shared:
            total = total + self._shared_cost(X, probs, out)
        return torch.log(total)

    def _shared_cost(self, X: torch.Tensor, probs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Per node and shareable lead (module docstring), the chance that some edge leaving
        the node starts with it, times its learned cost: edges are drawn independently, so
        ``1 − Π_e (1 − q_e)`` is that chance exactly and the term is an exact expectation."""
        K, G, M = self.K, len(self.groups), self.members
        normal = X[..., :1, None]  # (..., 1, 1)
        each = torch.einsum("...ek,tekg->t...eg", probs, self.lead)  # per block type
        q = normal * each[0] + (1 - normal) * each[1]  # (..., E, G): P(edge starts with g)
        leaving = q[..., self.out_index, :] * self.out_real[..., None]  # (..., S, D, G)
        none_of = torch.ones_like(leaving[..., 0, :])
        for edge in leaving.unbind(-2):  # not torch.prod: its backward reads a count back
            none_of = none_of * (1 - edge)  # from the device (a sync per search step on a GPU)
        anyof = 1 - none_of  # (..., S, G)
        start = 2 * K + 1
        log_cost = out[..., start : start + G][..., None, :]  # (M, ..., 1, G)
        lead_shape = (M,) + (1,) * (X.dim() - 1) + (len(self.sources), 1)
        log_cost = log_cost + self.source_log_scale.reshape(lead_shape)
        return (anyof * torch.exp(log_cost)).sum(dim=(-1, -2))

    def member_keys(self) -> list[str]:
        """Every trainable tensor is indexed by member first (early stopping keeps each
        member's own best epoch)."""
        return [k for k, _ in self.named_parameters()]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """The members' mean in ms (as log ms): a mean of models linear in p is linear in p,
        so the prediction stays an exact expectation over paths."""
        each = self.member_outputs(X)
        return (torch.logsumexp(each, dim=0) - math.log(self.members))[..., None]


@register_predictor
class AdditivePredictor(Predictor):
    kind = "additive"
    defaults = DEFAULTS
    differentiable = True

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        hp = self._hp()
        if hp["edge_scale"] not in EDGE_SCALES:
            raise InputError(
                f"edge_scale must be one of {', '.join(EDGE_SCALES)}, got {hp['edge_scale']!r}"
            )
        divisible = hp["divisible"]
        if isinstance(divisible, str) and divisible == "auto":  # the labels' runtime's steps
            divisible = AUTO_DIVISIBLE.get(backend_of(train), [])
        align = hp["align"]
        if isinstance(align, str) and align == "auto":  # the labels' runtime's kernel blocks
            align = AUTO_ALIGN.get(backend_of(train), EAGER_ALIGN)
        shared = _shared(hp["shared"], self.space)
        self.net = AdditiveNet(
            self.space,
            hp["hidden"],
            hp["edge_scale"],
            align,
            hp["members"],
            divisible,
            shared,
        )
        raw = self.net.raw_shape(torch.as_tensor(train.X, dtype=torch.float64))
        self.net.shift.copy_(raw.mean(0))
        std = raw.std(0)
        self.net.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))
        with torch.no_grad():  # start near the data: each op and the overhead ~ y / (E + 1)
            start = torch.log(torch.as_tensor(train.y).mean() / (self.space.num_edges + 1))
            bias = self.net.curves.biases[-1]
            # ops, overhead and leads alike (a rough start for the leads: training moves them)
            n_cost = 2 * self.space.max_ops + 1 + len(self.net.groups)
            bias[..., :n_cost].fill_(float(start))
            bias[..., n_cost:].zero_()
        self.info["training"] = train_log_target(
            self.net, lambda X: X, None, train, val, hp, self.seed
        )

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.net(X.to(torch.float64)).squeeze(-1)).to(X.dtype)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        params = {
            "hidden": self.net.hidden,
            "edge_scale": "shaped" if self.net.shaped else "constant",
            "align": self.net.align,
            "divisible": self.net.divisible,
            "members": self.net.members,
            "shared": self.net.shared,
        }
        return dict(self.net.state_dict()), params

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        edge_scale = params.get("edge_scale", "constant")  # models saved before the option
        if edge_scale not in EDGE_SCALES:
            raise InputError(f"unknown edge_scale {edge_scale!r} in the model file")
        align = _align(params.get("align", []))  # models saved before the option: none
        divisible = _align(params.get("divisible", []), "divisible")  # likewise
        n_shape = 3 + len(align) + len(divisible)
        if tuple(tensors.get("shift", torch.empty(0)).shape) != (n_shape,):
            raise InputError(
                f"align {align} and divisible {divisible} in the model file do not match its "
                f"weights (expected {n_shape} shape inputs)"
            )
        if "members" not in params:  # saved before members: one network, nn.Linear layers
            tensors = _one_member(tensors)
        members = _members(params.get("members", 1))
        shared = params.get("shared", False)  # models saved before the option: none
        if not isinstance(shared, bool):
            raise InputError(f"shared must be true or false in the model file, got {shared!r}")
        if ("lead" in tensors) != shared:
            raise InputError(
                f"shared {shared} in the model file does not match its weights "
                f"({'with' if 'lead' in tensors else 'without'} shared-lead terms)"
            )
        self.net = AdditiveNet(
            self.space, params["hidden"], edge_scale, align, members, divisible, shared
        )
        self.net.load_state_dict(tensors)
        # what the network is, not today's defaults (a file from before an option has none)
        shape = {
            "hidden": self.net.hidden,
            "edge_scale": edge_scale,
            "align": align,
            "divisible": divisible,
            "shared": shared,
        }
        self.hparams = {**self.hparams, **shape, "members": members}
        self.net.eval()


def _align(value: Any, name: str = "align") -> list[int]:
    """``align`` (or ``divisible``: ``name``) as a list of channel multiples in 1..4096; one int
    is one multiple, ``0`` or ``[]`` none, ``"8+16"`` two (the benchmark scripts' ``k=v``
    syntax has no lists)."""
    items = value.split("+") if isinstance(value, str) else value
    items = items if isinstance(items, (list, tuple)) else [items]
    out = []
    for m in items:
        if isinstance(m, str) and m.strip().isdigit():
            m = int(m)
        whole = isinstance(m, int) or (isinstance(m, float) and math.isfinite(m) and m == int(m))
        if isinstance(m, bool) or not whole:
            raise InputError(f"{name} must be whole channel multiples, got {value!r}")
        if not 0 <= m <= MAX_ALIGN:
            raise InputError(f"{name} multiples must be in 1..{MAX_ALIGN} (0: none), got {value!r}")
        out.append(int(m))
    return [m for m in out if m > 0]


def backend_of(data: LatencyData) -> str:
    """The runtime that timed ``data``'s labels (a file from before backends: PyTorch)."""
    return (data.fingerprint or {}).get("backend", "torch")


def _shared(value: Any, space: SearchSpace) -> bool:
    """``shared`` as a bool: ``"auto"`` is on in a space with shareable first layers, under
    either runtime (ONNX Runtime merges them; eager labels fit better with them too, module
    docstring)."""
    if isinstance(value, str) and value == "auto":
        return has_shared_lead(space)
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false", "on", "off"):
        return value in (1, "1", "true", "on")
    raise InputError(f"shared must be auto, true or false, got {value!r}")


def _members(value: Any) -> int:
    """``members`` as a whole number in 1..64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MEMBERS:
        raise InputError(f"members must be a whole number in 1..{MAX_MEMBERS}, got {value!r}")
    return value


def _one_member(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model file from before ``members``: its ``curves.i.weight/bias`` (``nn.Sequential``
    of Linear and SiLU) and ``(E,)`` edge scales, as a one-member stack."""
    linear = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("curves.")})
    out = {k: v for k, v in tensors.items() if not k.startswith("curves.")}
    pairs = [(tensors[f"curves.{i}.weight"], tensors[f"curves.{i}.bias"]) for i in linear]
    out.update({f"curves.{k}": v for k, v in StackedMLP.single_to_stacked(pairs).items()})
    out["edge_log_scale"] = tensors["edge_log_scale"].reshape(1, -1)
    return out


def _share_groups(space: SearchSpace) -> tuple[list[str], list[list[int]]]:
    """The shareable leads of ``space`` (both block types, sorted: a saved model's outputs
    keep their order), and per node with outgoing edges, their indices."""
    keys = {
        k
        for bt in ("normal", "reduction")
        for e in space.edges
        for k in shared_leads(space, bt, e)
        if k is not None
    }
    nodes = sorted({e.src for e in space.edges})
    sources = [[e.index for e in space.edges if e.src == n] for n in nodes]
    return sorted(keys), sources


def _lead_members(space: SearchSpace, groups: list[str]) -> torch.Tensor:
    """``(2, E, K, G)``: 1 where op slot ``k`` of edge ``e`` starts with lead ``g``, in a
    normal block (``[0]``) and a reduction (``[1]``)."""
    out = torch.zeros(2, space.num_edges, space.max_ops, len(groups), dtype=torch.float64)
    for t, bt in enumerate(("normal", "reduction")):
        for e in space.edges:
            for k, key in enumerate(shared_leads(space, bt, e)):
                if key is not None:
                    out[t, e.index, k, groups.index(key)] = 1.0
    return out
