"""A LENNA dataset file with synthetic labels of known additive structure (no measuring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenna.measure.fingerprint import fingerprint
from lenna.measure.runner import RunConfig
from lenna.measure.sampler import Sampler
from lenna.measure.store import Dataset
from lenna.space import get_space, probabilities
from lenna.space.op_kinds import shared_leads


def op_cost(
    space, name: str, kind: str, channels: int, resolution: int, pad: int = 0, step: int = 0
) -> float:
    """A made-up op cost in ms: grows with channels and resolution, differs per op; smooth in
    channels, or (``pad``) in channels rounded up to a multiple of ``pad`` (blocked kernels),
    or (``step``) 3× where the width is no multiple of ``step`` (a runtime's fallback kernel)."""
    k = (sum(map(ord, name)) % 7 + 1) / 7
    c = channels * (2 if kind == "down" else 1)
    slow = 3.0 if step and c % step else 1.0
    if pad:
        c = -(-c // pad) * pad
    return slow * 1e-3 * k * (c**1.3) * (resolution / 8) ** 2 + 0.01


def make_synthetic(
    path: Path,
    space_name: str = "lenna",
    n: int = 300,
    noise: float = 0.0,
    overhead: float = 0.0,
    seed: int = 0,
    channels=(8, 64),
    resolutions=(16, 8),
    pad: int = 0,
    step: int = 0,
    lead: float = 0.0,
) -> Path:
    """``lead`` (ms at C = 32, 8×8): what a runtime that merges common subexpressions pays
    once per node and shareable first layer (:func:`lenna.space.op_kinds.shared_leads`),
    however many edges leaving the node start with it; the labels are that expectation."""
    space = get_space(space_name)
    cfg = RunConfig(space=space_name, channels=channels, resolutions=resolutions, seed=seed)
    fp = fingerprint("cpu", 1)
    meta = {
        "space": space.name,
        "space_hash": space.definition_hash(),
        "config": cfg.to_dict(),
        "fingerprint": fp,
    }
    rng = np.random.default_rng(seed)
    sampler = Sampler(space, channels, resolutions, seed=seed)
    grid = sorted({channels[0], channels[1], 16, 32})
    with Dataset.create(path, meta) as ds:
        ds.add_fingerprint(fp)
        ops = []
        for bt in ("normal", "reduction"):
            for r in resolutions:
                for c in grid:
                    for kind, names in (("same", space.ops), ("down", space.down_ops)):
                        if kind == "down" and bt == "normal":
                            continue
                        for name in names:
                            ops.append(
                                {
                                    "op": name,
                                    "block_type": bt,
                                    "edge_kind": kind,
                                    "channels": c,
                                    "resolution": r,
                                    "batch": 1,
                                    "c_in": c,
                                    "c_out": c,
                                    "stride": 1 + (kind == "down"),
                                    "latency_ms": op_cost(space, name, kind, c, r, pad, step),
                                    "spread_ms": 0.0,
                                    "passes": 1,
                                    "fingerprint": fp["hash"],
                                }
                            )
        ds.add_ops(ops)
        for i in range(n):
            s = sampler(i)
            p = probabilities(space, s.block_type, s.alphas)
            y = 0.0
            for e in space.edges:
                kind = "down" if space.is_down(s.block_type, e) else "same"
                for j, name in enumerate(space.edge_ops(s.block_type, e)):
                    cost = op_cost(space, name, kind, s.channels, s.resolution, pad, step)
                    y += p[e.index, j] * cost
            y += lead * _expected_leads(space, s.block_type, p) * s.channels / 32
            y = (y + overhead * s.channels / 64) * (1 + noise * rng.standard_normal())
            ds.add_sample(
                {
                    "sample_index": i,
                    "block_type": s.block_type,
                    "channels": s.channels,
                    "resolution": s.resolution,
                    "batch": 1,
                    "regime": s.regime,
                    "alphas": s.alphas,
                    "latency_ms": y,
                    "rule": "synthetic",
                    "resets": 0,
                    "passes": 0,
                    "ci_half_width_ms": 0.0,
                    "converged": 1,
                    "wall_s": 0.0,
                    "fingerprint": fp["hash"],
                    "drift_flag": 0,
                    "trace": None,
                }
            )
    return path


def _expected_leads(space, block_type: str, p: np.ndarray) -> float:
    """The expected number of distinct (node, shareable first layer) pairs a path runs."""
    total = 0.0
    for src in sorted({e.src for e in space.edges}):
        out = [e for e in space.edges if e.src == src]
        keys = {k for e in out for k in shared_leads(space, block_type, e) if k is not None}
        for key in keys:
            none_of = 1.0
            for e in out:
                leads = shared_leads(space, block_type, e)
                none_of *= 1 - sum(p[e.index, j] for j, k in enumerate(leads) if k == key)
            total += 1 - none_of
    return total
