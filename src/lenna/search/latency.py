"""The latency term of the α loss: E[latency](α) from a trained predictor, and its forms.

E[latency] is the sum over the network's cells of the predictor at each cell's own
(block type, channels, resolution), with that cell type's α, plus what the cell's place adds
to its label (a `darts` cell's wider input preprocessing, measured once per network shape).
Because the predictor is a small torch model, its gradient to α is exact and costs far less
than a supernet step.

Forms (``lam`` = λ):

- ``linear``: ``CE + λ · E / ref`` (``ref`` = E at uniform α unless given), or with a budget
  ``CE + λ · max(E − target, 0) / ref``;
- ``log`` (ProxylessNAS/FBNet): ``CE · (log E / log ref)^λ`` with E in microseconds (so the
  logarithm stays positive), or with a budget ``CE · max(1, log E / log target)^λ``.

A whole-network budget ``T`` (``budget_ms``) replaces λ by a Lagrange multiplier μ ≥ 0 that the
search raises while the derived network is predicted over ``T`` and lowers when under it
(:mod:`lenna.search.budget`): ``CE + μ · (E + fixed − T) / T``, where ``fixed`` is the measured
part of the network outside the cells (stem, per-cell BN, pooling, classifier).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch

from lenna.errors import InputError
from lenna.predict.base import OutOfRange, Predictor
from lenna.search.network import CellSpec
from lenna.space import SearchSpace

FORMS = ("linear", "log")


class LatencyTerm:
    """Predicted expected latency of a network's cells, and the penalty built from it."""

    def __init__(
        self,
        predictor: Predictor,
        space: SearchSpace,
        cells: Sequence[CellSpec],
        lam: float = 0.0,
        form: str = "linear",
        ref_ms: float | None = None,
        target_ms: float | None = None,
        allow_extrapolation: bool = False,
        budget_ms: float | None = None,
        fixed_ms: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> None:
        if predictor.space.name != space.name:
            raise InputError(
                f"the predictor is a model of space {predictor.space.name!r}, "
                f"the search uses {space.name!r}"
            )
        if predictor.space.definition_hash() != space.definition_hash():
            raise InputError(f"the predictor was trained on another definition of {space.name!r}")
        if not predictor.differentiable:
            raise InputError(
                f"the {predictor.kind} model is not differentiable; "
                "search with lut, elasticnet, mlp, lut+mlp or additive"
            )
        if not math.isfinite(lam) or lam < 0:
            raise InputError(f"λ must be a finite number >= 0, got {lam}")
        if form not in FORMS:
            raise InputError(f"unknown latency form {form!r}; expected one of: {', '.join(FORMS)}")
        if budget_ms is not None and (lam > 0 or target_ms is not None):
            raise InputError("a latency budget replaces λ and the target: give one or the other")
        if not (math.isfinite(fixed_ms) and fixed_ms >= 0):
            raise InputError(f"the fixed part must be a number of ms >= 0, got {fixed_ms}")
        for name, v in (
            ("reference latency", ref_ms),
            ("target latency", target_ms),
            ("latency budget", budget_ms),
        ):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a positive number of ms, got {v}")
            if v is not None and form == "log" and v <= 1e-3:
                raise InputError(f"the log form needs a {name} above 1 µs, got {v} ms")
        self.device = torch.device(device)  # where α live: the predictor runs there too
        self.predictor, self.space, self.cells = predictor.to(self.device), space, list(cells)
        self.lam, self.form, self.target_ms = float(lam), form, target_ms
        self.budget_ms, self.fixed_ms = budget_ms, float(fixed_ms)
        self.multiplier = 0.0  # μ of a budget; set by the search each step
        # per cell: its preprocessing as the network runs it minus as its label timed it
        # (:mod:`lenna.search.preprocessing`); zero until :meth:`set_offsets`
        self.cell_offsets_ms = [0.0] * len(self.cells)
        # the whole network minus its parts timed alone (:mod:`lenna.search.network_gap`)
        self.gap_ms = 0.0
        self.outside = self._check_ranges(allow_extrapolation)
        # per block type: its cells' (channels, resolution), asked in one predictor pass
        self._shapes: dict[str, tuple[list[int], list[int]]] = {}
        for bt in dict.fromkeys(c.block_type for c in self.cells):
            of_type = [c for c in self.cells if c.block_type == bt]
            self._shapes[bt] = ([c.channels for c in of_type], [c.resolution for c in of_type])
        self._ref_given = ref_ms is not None
        self.ref_ms = float(ref_ms) if ref_ms is not None else self.uniform_ms()
        if not (math.isfinite(self.ref_ms) and self.ref_ms > 0):
            raise InputError(
                f"the predictor gives {self.ref_ms} ms at uniform α; a latency term needs a "
                "positive reference ("
                + (
                    "pass --ref-ms, or use a better predictor)"
                    if self.lam > 0
                    else "use a better predictor)"
                )
            )

    @property
    def outside_ms(self) -> float:
        """What the whole network adds to its cells' predictions: the fixed part and the gap
        between the network and its parts timed alone (negative where each part timed alone
        pays a per-call cost the network pays once, as under ONNX Runtime)."""
        return self.fixed_ms + self.gap_ms

    def set_offsets(self, offsets_ms: Sequence[float]) -> None:
        """Add to each cell's prediction what its place in the network adds to its label (the
        wider input preprocessing of a `darts` cell); the default reference follows."""
        offsets = [float(v) for v in offsets_ms]
        if len(offsets) != len(self.cells):
            raise InputError(
                f"the network has {len(self.cells)} cells; got {len(offsets)} preprocessing offsets"
            )
        if not all(math.isfinite(v) for v in offsets):
            raise InputError(f"a preprocessing offset is not a finite number: {offsets}")
        if not self._ref_given:
            ref = self.uniform_ms() + sum(offsets) - sum(self.cell_offsets_ms)
            if not (math.isfinite(ref) and ref > (1e-3 if self.form == "log" else 0)):
                raise InputError(
                    f"with these preprocessing offsets the cells come to {ref:.4g} ms at uniform "
                    "α; a latency term needs a positive reference"
                    + (" (pass --ref-ms)" if self.lam > 0 else "")
                )
            self.ref_ms = ref
        self.cell_offsets_ms = offsets

    def _check_ranges(self, allow: bool) -> list[str]:
        msgs = []
        for c in self.cells:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OutOfRange)
                msg = self.predictor.check_range(c.block_type, c.channels, c.resolution)
            if msg is None:
                continue
            if not allow:
                raise InputError(
                    f"cell {c.index} ({c.block_type}, {c.channels} ch, {c.resolution} px) lies "
                    f"outside the predictor's training ranges; measure such blocks or pass "
                    f"--allow-extrapolation ({msg})"
                )
            warnings.warn(f"cell {c.index}: {msg}", OutOfRange, stacklevel=3)
            msgs.append(msg)
        return msgs

    def expected_ms(self, alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ over cells of the predicted expected latency (ms), differentiable in ``alphas``:
        one predictor pass per cell type, at all its cells' shapes (ranges checked in
        ``__init__``)."""
        total = None
        for bt, (channels, resolution) in self._shapes.items():
            a = alphas[bt].to(self.device, torch.float64)
            a = a.expand(len(channels), *a.shape)  # the cells of a type share its α
            ms = self.predictor.predict_shapes(a, bt, channels, resolution).sum()
            total = ms if total is None else total + ms
        return total + sum(self.cell_offsets_ms)

    def per_cell_ms(self, alphas: Mapping[str, torch.Tensor]) -> list[float]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfRange)
            return [
                float(
                    self.predictor.predict(
                        alphas[c.block_type].to(self.device, torch.float64),
                        c.block_type,
                        c.channels,
                        c.resolution,
                    )
                )
                + offset
                for c, offset in zip(self.cells, self.cell_offsets_ms, strict=True)
            ]

    @property
    def active(self) -> bool:
        """Whether the latency term moves α now (λ > 0, or a budget whose μ > 0)."""
        return self.lam > 0 or (self.budget_ms is not None and self.multiplier > 0)

    def uniform_ms(self) -> float:
        """E[latency] at uniform α: the default reference (the supernet's starting point)."""
        zeros = torch.zeros(self.space.alpha_shape, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            return float(self.expected_ms({c.block_type: zeros for c in self.cells}))

    def loss(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, multiplier: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The α loss from the cross-entropy and E[latency] (ms) of the cells. ``multiplier``:
        a budget's μ as a tensor (of ``ce``'s dtype) in place of :attr:`multiplier`."""
        e = expected_ms.to(ce.device, ce.dtype)
        if self.budget_ms is not None:  # the Lagrangian; μ is a constant within a step
            mu = self.multiplier if multiplier is None else multiplier
            return ce + mu * (e + self.outside_ms - self.budget_ms) / self.budget_ms
        if self.lam == 0:
            return ce
        if self.form == "linear":
            if self.target_ms is not None:
                return ce + self.lam * torch.relu(e - self.target_ms) / self.ref_ms
            return ce + self.lam * e / self.ref_ms
        log_e = torch.log(torch.clamp(e * 1e3, min=1.0 + 1e-6))  # ≥ 1 µs: log stays > 0
        base = math.log(self.target_ms * 1e3 if self.target_ms is not None else self.ref_ms * 1e3)
        ratio = log_e / base
        if self.target_ms is not None:
            ratio = torch.clamp(ratio, min=1.0)
        return ce * ratio**self.lam
