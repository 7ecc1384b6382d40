"""Stopping rules: how many gate resets and passes make a trustworthy expected latency.

A block's expected latency under α is the mean over paths sampled from softmax(α). Two
sources of spread: *path variance* (different resets run different ops; fought only by more
resets, or by a control variate) and *timer noise* (fought by more passes per reset).

- :class:`SeedRule` is the seed's rule, exactly: per reset ``n`` passes → ``q``-quantile;
  running average; stop after ``k`` consecutive resets whose relative change is < ``tol``.
  Its flaw: the running average of ``t`` values moves by ~1/t of a new value, so "change < 1 %"
  comes long before the average is known to 1 %.
- :class:`CIRule` stops when the ``confidence`` interval of the estimate is within ±``rel`` of
  it. With ``control=True`` (the default rule, ``cv``) it uses a control variate: each path's
  sum of standalone op costs ``c_r``, whose expectation under softmax(α), ``Σ p·L(op)``, is
  known exactly. The estimate ``ȳ - β(c̄ - E[c])`` (β by least squares) has only the residual
  variance, so far fewer resets reach the same interval. Errors in the op costs do not bias
  it: they only weaken the correlation. Given ``z0_ms`` (and a bench with a reference block),
  each reset's value is ``y · Z0 / z``: the path's time over the reference's, timed pass by
  pass alongside, back in ms at the calibrated speed ``Z0``. This divides out the machine's
  drift, which no number of resets averages away (see :mod:`lenna.measure.reference`). The
  control variate is unaffected: a common scale on the op costs cancels in ``β(c̄ - E[c])``.
  Why the per-reset quantiles of interleaved y and z passes: dividing by a reference smoothed
  over neighbouring resets needs more resets, the median of the pass-by-pass ratios repeated
  no better, and an exponent on ``Z0 / z`` fitted within measurements did not hold between
  them (``benchmarks/diagnostics/reset_noise.py``, RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
from scipy import stats

from lenna.errors import InputError


class Bench(Protocol):
    """What a stopping rule needs of a bench (the rule defines it, so it imports no bench):
    a gate reset that returns the sampled path, plain passes, and passes paired with the
    reference block."""

    def reset(self) -> list[int]: ...
    def passes(self, n: int) -> np.ndarray: ...
    def paired(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Estimate:
    """One label and how it was reached (all times in milliseconds)."""

    latency_ms: float
    rule: str
    resets: int
    passes: int
    ci_half_width_ms: float
    converged: bool
    values_ms: list[float] = field(default_factory=list)  # per-reset values
    controls_ms: list[float] = field(default_factory=list)  # per-reset control (cv only)
    rejected: int = 0  # resets dropped as interference (cv only)
    reference_ms: float | None = None  # calibrated ms of the reference used (Z0 × anchor ratio)
    references_ms: list[float] = field(default_factory=list)  # per-reset time of that reference
    expected_control_ms: float | None = None  # E[control] under softmax(α) (cv only)

    @property
    def load(self) -> float | None:
        """How busy the machine was, against this dataset's calibration: the median over
        resets of the reference's per-reset value (the min of its passes) over its calibrated
        time, ``Z0`` × its anchor's ratio (1.0: as fast as at calibration; 1.2: 20 % slower).
        ``None`` when not normalised (always for the ``seed`` rule). A relative figure: its
        baseline is the calibration's moment and device."""
        if not self.references_ms or not self.reference_ms:
            return None
        return float(np.median(self.references_ms) / self.reference_ms)


@dataclass
class SeedRule:
    """The seed's rule (see module docstring)."""

    n: int = 20
    q: float = 0.4
    tol: float = 0.01
    k: int = 10
    min_resets: int = 1
    max_resets: int = 100
    name: str = "seed"

    def __post_init__(self) -> None:
        _check(self.n >= 1 and self.k >= 1, f"seed rule needs n, k >= 1 (n={self.n}, k={self.k})")
        _check(0 <= self.q <= 1 and self.tol > 0, "seed rule needs 0 <= q <= 1 and tol > 0")
        _check(
            1 <= self.min_resets <= self.max_resets,
            f"need 1 <= min_resets <= max_resets, got {self.min_resets}, {self.max_resets}",
        )

    def run(
        self,
        bench: Bench,
        costs: np.ndarray | None = None,
        probs: object = None,
        z0_ms: float | None = None,
    ) -> Estimate:
        """``z0_ms`` is ignored: the seed's rule is kept exactly as the seed wrote it."""
        values: list[float] = []
        streak, avg = 0, None
        while len(values) < self.max_resets:
            bench.reset()
            values.append(float(np.quantile(bench.passes(self.n), self.q)) * 1e3)
            new_avg = float(np.mean(values))
            if avg is not None:
                streak = streak + 1 if abs(new_avg - avg) / avg < self.tol else 0
            avg = new_avg
            if streak >= self.k and len(values) >= self.min_resets:
                break
        return Estimate(
            latency_ms=avg,
            rule=self.name,
            resets=len(values),
            passes=len(values) * self.n,
            ci_half_width_ms=_mean_half_width(np.array(values), 0.95),
            converged=streak >= self.k,
            values_ms=values,
        )


@dataclass
class CIRule:
    """Stop when the confidence interval is within ±``rel`` (see module docstring)."""

    passes: int = 3
    q: float = 0.0  # per-reset value: this quantile of the passes (0 = min, 0.5 = median)
    rel: float = 0.01
    confidence: float = 0.95
    min_resets: int = 20
    max_resets: int = 150
    control: bool = True
    reject: float = 5.0  # drop resets this many robust SDs above the fit (0: keep all)
    name: str = "cv"
    max_rejected: float = 0.05  # at most this share of resets may be dropped as interference

    def __post_init__(self) -> None:
        _check(self.passes >= 1, f"passes must be >= 1, got {self.passes}")
        _check(0 <= self.q <= 1, f"q must be in [0, 1], got {self.q}")
        _check(self.rel > 0 and 0 < self.confidence < 1, "need rel > 0 and 0 < confidence < 1")
        _check(
            3 <= self.min_resets <= self.max_resets,
            f"need 3 <= min_resets <= max_resets, got {self.min_resets}, {self.max_resets}",
        )

    def run(
        self,
        bench: Bench,
        costs: np.ndarray | None = None,
        probs: np.ndarray | None = None,
        z0_ms: float | None = None,
    ) -> Estimate:
        use_cv = self.control and costs is not None and probs is not None
        if self.control and not use_cv:
            raise InputError("the cv rule needs op costs and probabilities for its control variate")
        mask = ~np.isnan(costs) if use_cv else None
        expected_c = (
            float(np.sum(np.where(mask, probs * np.nan_to_num(costs), 0.0))) * 1e3
            if use_cv
            else 0.0
        )
        ys: list[float] = []
        cs: list[float] = []
        zs: list[float] = []
        est, half, rejected = float("nan"), float("inf"), 0
        while len(ys) < self.max_resets:
            path = bench.reset()
            if z0_ms is None:
                ys.append(float(np.quantile(bench.passes(self.passes), self.q)) * 1e3)
            else:
                y, z = bench.paired(self.passes)
                zs.append(float(np.quantile(z, self.q)) * 1e3)
                ys.append(float(np.quantile(y, self.q)) * 1e3 * z0_ms / zs[-1])
            if use_cv:
                cs.append(float(sum(costs[e, j] for e, j in enumerate(path))) * 1e3)
            if len(ys) < self.min_resets:
                continue
            est, half, rejected = self.fit(ys, cs if use_cv else None, expected_c)
            if half <= self.rel * abs(est):
                break
        return Estimate(
            latency_ms=est,
            rule=self.name,
            resets=len(ys),
            passes=len(ys) * self.passes,
            ci_half_width_ms=half,
            converged=half <= self.rel * abs(est),
            values_ms=ys,
            controls_ms=cs,
            rejected=rejected,
            reference_ms=z0_ms,
            references_ms=zs,
            expected_control_ms=expected_c if use_cv else None,
        )

    def fit(
        self, values: list[float], controls: list[float] | None, expected_c: float
    ) -> tuple[float, float, int]:
        """The estimate, its half-width and the resets dropped as interference, from these
        per-reset values (and controls, with their known mean ``expected_c``)."""
        y, c = np.asarray(values, float), None if controls is None else np.asarray(controls, float)
        keep = np.ones(len(y), bool)
        if self.reject > 0:
            keep = _inliers(y, c, self.reject, max(1, int(self.max_rejected * len(y))))
        est, half = _estimate(y[keep], None if c is None else c[keep], expected_c, self.confidence)
        return est, half, int((~keep).sum())

    def replay(
        self, values: list[float], controls: list[float] | None, expected_c: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The estimate and half-width the rule computes after each reset (NaN before the
        third; it may stop only from ``min_resets`` on): a stored trace, replayed, shows how
        its label converged, and the last pair is the label's."""
        n = len(values)
        est, half = np.full(n, np.nan), np.full(n, np.nan)
        for i in range(3, n + 1):
            est[i - 1], half[i - 1], _ = self.fit(
                values[:i], None if controls is None else controls[:i], expected_c
            )
        return est, half


def _line(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of ``y`` on ``x`` by least squares (slope 0 if ``x`` is constant).
    In closed form: the rule refits after every reset, and ``np.polyfit`` costs ~8× more."""
    if np.ptp(x) == 0:  # not ``sxx == 0``: a constant's mean can round, leaving sxx ~1e-32
        return float(y.mean()), 0.0
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean())) / float(dx @ dx)
    return float(y.mean() - slope * x.mean()), slope


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _inliers(y: np.ndarray, c: np.ndarray | None, k: float, cap: int) -> np.ndarray:
    """Resets not hit by interference: residual at most ``k`` robust SDs above the fit.

    Interference only ever adds time, and the control explains the path, so a residual far
    above the rest is a stall of the machine, not a property of the block. The fit is made
    twice, the second time without the first one's outliers so they cannot drag it. At most
    ``cap`` resets (the largest residuals) are dropped, so a path that is really slower than
    its op costs say cannot be thrown away wholesale.
    """
    x = np.zeros(len(y)) if c is None else c
    keep = np.ones(len(y), bool)
    for _ in range(2):
        a, b = _line(y[keep], x[keep])
        r = y - (a + b * x)
        med = np.median(r[keep])
        scale = 1.4826 * np.median(np.abs(r[keep] - med))
        if scale == 0:
            break
        keep = r <= med + k * scale
        if (~keep).sum() > cap:
            keep = np.ones(len(y), bool)
            if cap > 0:
                keep[np.argsort(r)[-cap:]] = False
    return keep


def _mean_half_width(y: np.ndarray, confidence: float) -> float:
    n = len(y)
    if n < 2:
        return float("inf")
    return float(_t(confidence, n - 1) * y.std(ddof=1) / np.sqrt(n))


def _estimate(
    y: np.ndarray, c: np.ndarray | None, expected_c: float, confidence: float
) -> tuple[float, float]:
    """Estimate and CI half-width; with a control ``c`` of known mean, the regression estimator."""
    if c is None or len(y) < 3 or np.ptp(c) == 0:
        return float(y.mean()), _mean_half_width(y, confidence)
    n = len(y)
    dc = c - c.mean()
    sxx = float(dc @ dc)
    beta = float(dc @ (y - y.mean())) / sxx
    est = float(y.mean() - beta * (c.mean() - expected_c))
    resid = y - y.mean() - beta * dc
    s2 = float(resid @ resid) / (n - 2)
    se = np.sqrt(s2 * (1.0 / n + (c.mean() - expected_c) ** 2 / sxx))
    return est, float(_t(confidence, n - 2) * se)


@lru_cache(maxsize=1024)
def _t(confidence: float, df: int) -> float:
    """Student's t quantile of a two-sided ``confidence`` interval (cached: scipy takes
    ~0.1 ms, and the rule asks after every reset)."""
    return float(stats.t.ppf(0.5 + confidence / 2, df))


RULES = {
    "seed": SeedRule,
    "cv": CIRule,
    "ci": lambda **kw: CIRule(**{"control": False, "reject": 0.0, "name": "ci", **kw}),
}


def make_rule(name: str, **params: float) -> SeedRule | CIRule:
    """A rule by name: ``cv`` (default: CI with control variate), ``ci`` (plain CI), ``seed``."""
    if name not in RULES:
        raise InputError(f"unknown stopping rule {name!r}; expected one of: {', '.join(RULES)}")
    return RULES[name](**params)
