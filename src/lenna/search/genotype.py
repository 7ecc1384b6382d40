"""A derived architecture and its JSON file (``genotype.json``).

The derive rules themselves are the space's (:mod:`lenna.space.derive`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lenna._version import __version__
from lenna.atomic import write_text
from lenna.errors import InputError
from lenna.search.network import NetConfig
from lenna.space import SearchSpace, get_space
from lenna.space.derive import derive

GENOTYPE_FORMAT = 1


@dataclass
class Genotype:
    """A derived architecture and where it came from."""

    space: str
    cells: dict[str, list[str | None]]  # block type -> one op (or None) per edge
    net: NetConfig
    lam: float
    predicted_ms: float | None = None
    predicted_cells_ms: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    predicted_fixed_ms: float | None = None  # the network outside its cells (measured once)
    budget_ms: float | None = None
    # the whole network minus its parts timed alone (measured once; None: a file from before)
    predicted_gap_ms: float | None = None

    @property
    def searched_for(self) -> str:
        """What the search traded against: "λ = 0.5", or "budget 7.9 ms" for a budget search
        (whose stored λ, 0, is not what steered it)."""
        return f"λ = {self.lam:g}" if self.budget_ms is None else f"budget {self.budget_ms:g} ms"

    @property
    def predicted_network_ms(self) -> float | None:
        """The whole network: the cells (``predicted_ms``), the fixed part and the gap between
        the network and its parts timed alone."""
        if self.predicted_ms is None or self.predicted_fixed_ms is None:
            return None
        return self.predicted_ms + self.predicted_fixed_ms + (self.predicted_gap_ms or 0.0)

    @classmethod
    def from_alphas(
        cls, space: SearchSpace, alphas: dict[str, torch.Tensor], net: NetConfig, lam: float
    ) -> Genotype:
        cells = {bt: derive(space, bt, a.detach().cpu().double()) for bt, a in alphas.items()}
        return cls(space.name, cells, net, lam)

    def onehot_alphas(self) -> dict[str, torch.Tensor]:
        """Logits whose softmax is exactly this genotype: a dropped edge is the ``none`` op."""
        sp = get_space(self.space)
        out = {}
        for bt, ops in self.cells.items():
            a = torch.full(sp.alpha_shape, -1e4, dtype=torch.float64)
            for e, op in zip(sp.edges, ops, strict=True):
                names = sp.edge_ops(bt, e)
                if op is None and "none" not in names:
                    raise InputError(f"space {sp.name!r} cannot drop edges (it has no 'none' op)")
                a[e.index, names.index(op if op is not None else "none")] = 0.0
            out[bt] = a
        return out

    def to_dict(self) -> dict:
        return {
            "format": GENOTYPE_FORMAT,
            "lenna_version": __version__,
            "space": self.space,
            "space_hash": get_space(self.space).definition_hash(),
            "cells": self.cells,
            "net": self.net.to_dict(),
            "lam": self.lam,
            "predicted_ms": self.predicted_ms,
            "predicted_cells_ms": self.predicted_cells_ms,
            "predicted_fixed_ms": self.predicted_fixed_ms,
            "predicted_gap_ms": self.predicted_gap_ms,
            "predicted_network_ms": self.predicted_network_ms,
            "budget_ms": self.budget_ms,
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        path = Path(path)
        if path.is_dir():
            inside = path / "genotype.json"
            hint = f"give {inside}" if inside.is_file() else "give a run's genotype.json"
            raise InputError(f"{path} is a folder; {hint}")
        if not path.is_file():
            raise InputError(f"{path}: no such genotype file")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a genotype file (not JSON: {e})") from None
        if not isinstance(d, dict):
            raise InputError(f"{path} is not a genotype file (not a JSON object)")
        missing = [k for k in ("format", "space", "cells", "net", "lam") if k not in d]
        if missing:
            raise InputError(f"{path} is not a genotype file (no {missing[0]!r})")
        fmt, name, cells = d["format"], d["space"], d["cells"]
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
            raise InputError(f"{path}: format must be a whole number >= 1, got {fmt!r}")
        if fmt > GENOTYPE_FORMAT:  # before its fields: a newer LENNA may have added some
            raise InputError(f"{path} has genotype format {fmt}, newer than this LENNA's; upgrade")
        if not isinstance(name, str):
            raise InputError(f"{path}: space must be a name, got {name!r}")
        try:
            net = NetConfig.from_dict(d["net"])
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        lam = _number(path, "lam", d["lam"], "a weight >= 0")
        sp = get_space(name)
        if d.get("space_hash") not in (None, sp.definition_hash()):
            raise InputError(f"{path} was derived from another definition of space {name!r}")
        g = cls(name, {}, net, lam)
        # measured parts are finite; the gap (network minus its parts timed alone) may be < 0
        for key, floor in (
            ("predicted_fixed_ms", 0.0),
            ("budget_ms", 0.0),
            ("predicted_gap_ms", None),
        ):
            v, ms = d.get(key), "a number of ms" + ("" if floor is None else " >= 0")
            setattr(g, key, None if v is None else _number(path, key, v, ms, floor))
        # predictions are stored as the model gave them (a cell's is a prediction plus a
        # measured offset, which may go below 0; an extrapolating model may overflow)
        v = d.get("predicted_ms")
        g.predicted_ms = (
            None
            if v is None
            else _number(path, "predicted_ms", v, "a number of ms", None, finite=False)
        )
        per_cell = d.get("predicted_cells_ms") or []
        if not isinstance(per_cell, list):
            raise InputError(f"{path}: predicted_cells_ms must be a list of ms, got {per_cell!r}")
        g.predicted_cells_ms = [
            _number(path, "predicted_cells_ms", v, "numbers of ms", None, finite=False)
            for v in per_cell
        ]
        g.info = _check_info(d.get("info") or {}, path)
        g.cells = _check_cells(sp, cells, path)
        return g


def _number(
    path: Path, key: str, v: object, what: str, floor: float | None = 0.0, finite: bool = True
) -> float:
    """``v`` as a float (finite, ``>= floor``, unless told otherwise): a string or a bool
    would print as a prediction or weigh a search as if it were one."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and (math.isfinite(v) or not finite)
    if not ok or (floor is not None and v < floor):
        raise InputError(f"{path}: {key} must be {what}, got {v!r}")
    return float(v)


def _check_info(info: object, path: Path) -> dict:
    """The run's notes: an object, whose ``measured_as`` (how the labels were timed) is one
    too; its fields are checked where a measurement reads them."""
    if not isinstance(info, dict):
        raise InputError(f"{path}: info must be an object, got {info!r}")
    rec = info.get("measured_as")
    if rec is not None and not isinstance(rec, dict):
        raise InputError(f"{path}: info.measured_as must be an object, got {rec!r}")
    return info


def _check_cells(sp: SearchSpace, cells: object, path: Path) -> dict[str, list[str | None]]:
    if not isinstance(cells, dict) or not cells:
        raise InputError(f"{path}: 'cells' must map block types to op lists")
    out = {}
    for bt, ops in cells.items():
        sp.check_block_type(bt)
        if not isinstance(ops, list) or len(ops) != sp.num_edges:
            raise InputError(f"{path}: {bt} cell needs {sp.num_edges} ops (one per edge)")
        for e, op in zip(sp.edges, ops, strict=True):
            if op is not None and op not in sp.edge_ops(bt, e):
                raise InputError(f"{path}: op {op!r} is not a candidate on {bt} edge {e.index}")
        out[bt] = list(ops)
    return out
