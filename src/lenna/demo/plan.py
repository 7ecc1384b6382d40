"""How big each stage of ``lenna demo`` is: the full default and ``--quick``.

Sized for a 2-core CPU: the full demo in about 10 minutes, ``--quick`` in 2–4 on a quiet VM (real
measurement, just less of it). The measured channels and resolutions cover exactly the cells
of the demo's search network (8 and 16 channels at 16×16 and 8×8), so the predictor is never
asked to extrapolate.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemoPlan:
    name: str
    samples: int  # blocks measured for the latency dataset
    channels: tuple[int, int]
    resolutions: tuple[int, ...]
    rule_params: dict = field(default_factory=dict)
    drift_every: int = 50
    op_passes: int = 20
    mlp: dict = field(default_factory=dict)  # hyper-parameters of mlp, lut+mlp and additive
    gbdt: dict = field(default_factory=dict)
    search_limit: int = 1000  # images the search uses (half w, half α)
    search_epochs: int = 6
    warmup: int = 1  # epochs of weight-only training before α moves
    batch: int = 50
    lam: float = 0.5  # as in benchmarks/search_tradeoff.py
    budget_share: float = 0.7  # the budget search: this share of the λ = 0 network, measured
    eval_limit: int | None = None  # images the derived networks train on (None: all)
    eval_epochs: int = 3
    eval_rule_params: dict = field(default_factory=dict)


FULL = DemoPlan(
    name="full",
    samples=160,
    channels=(8, 32),
    resolutions=(16, 8),
    search_limit=1000,
    search_epochs=6,
    eval_epochs=3,
)

QUICK = DemoPlan(
    name="quick",
    samples=24,
    channels=(8, 16),
    resolutions=(16, 8),
    rule_params={"min_resets": 8, "max_resets": 40, "rel": 0.03},
    drift_every=0,
    op_passes=10,
    mlp={"epochs": 300, "patience": 40},
    gbdt={"n_estimators": 200},
    search_limit=200,
    search_epochs=1,
    warmup=0,
    eval_limit=2000,  # ~60 steps: fewer leave BN's running statistics unsettled (chance accuracy)
    eval_epochs=2,
    eval_rule_params={"min_resets": 5, "max_resets": 20, "rel": 0.03},
)
