"""The cells a finished search ran and derived, as blocks to measure (``--from-run``).

Why: the predictor's number that matters is the derived cell's latency, and the cells most
worth labelling are the ones searches actually produce. A run folder holds them: the derived
cells (``genotype.json``) and α through the search (``alphas.jsonl``), each at the (type,
channels, resolution) its cells have in the searched network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenna.errors import InputError
from lenna.search.genotype import Genotype
from lenna.search.network import cell_specs
from lenna.space import cell_alphas, get_space

SNAPSHOTS = 3  # α snapshots taken from the later half of the search (the last one included)


@dataclass(frozen=True)
class RunCell:
    """One block to label: ``regime`` says where it came from (``run_derived``: a derived
    cell, ``run_alpha``: α of an epoch)."""

    block_type: str
    channels: int
    resolution: int
    alphas: np.ndarray
    regime: str


def run_cells(run_dir: str | Path, snapshots: int = SNAPSHOTS) -> tuple[str, list[RunCell]]:
    """The space of the run in ``run_dir`` and its cells: every derived cell and up to
    ``snapshots`` α of the later epochs, once per distinct (type, channels, resolution)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    g = Genotype.load(run_dir / "genotype.json")
    space = get_space(g.space)
    shapes = sorted({(s.block_type, s.channels, s.resolution) for s in cell_specs(space, g.net)})
    out = [
        RunCell(bt, c, h, cell_alphas(space, bt, g.cells[bt]), "run_derived")
        for bt, c, h in shapes
        if bt in g.cells
    ]
    for epoch in _pick(_read_alphas(run_dir / "alphas.jsonl", space, list(g.cells)), snapshots):
        out += [RunCell(bt, c, h, epoch[bt], "run_alpha") for bt, c, h in shapes if bt in epoch]
    return space.name, out


def _read_alphas(path: Path, space, block_types: list[str]) -> list[dict[str, np.ndarray]]:
    """Each line of ``alphas.jsonl``, checked (a torn last line, cut by a crash, is skipped;
    any other line that does not parse is one error naming the file and line)."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    epochs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue
            raise InputError(f"{path}, line {n}: not valid JSON") from None
        if not isinstance(d, dict):
            raise InputError(f"{path}, line {n}: expected an object of α per cell type")
        try:
            epochs.append({bt: space.check_alphas(d[bt]) for bt in block_types if bt in d})
        except InputError as e:
            raise InputError(f"{path}, line {n}: {e}") from None
    return epochs


def _pick(epochs: list, k: int) -> list:
    """Up to ``k`` epochs spread over the later half, the last one always among them."""
    if not epochs or k < 1:
        return []
    later = epochs[len(epochs) // 2 :]
    idx = np.unique(np.linspace(len(later) - 1, 0, min(k, len(later))).round().astype(int))
    return [later[i] for i in sorted(idx)]
