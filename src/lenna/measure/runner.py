"""A measuring run: sample → measure → commit, resumable, with a drift guard (a control
sample every K rows and, with matched references, an end-of-run check of the anchors' ratios).

The run is a pure function of (space, sampler config, measurement config, N): sample ``i``
is always the same block, so a run interrupted at any point (Ctrl-C, SIGTERM, ``kill -9``)
and started again completes the same dataset, with no duplicates. Nothing here prints; the
CLI passes callbacks for progress and warnings.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lenna.errors import InputError
from lenna.measure.block_measure import Measurement, measure_block, measure_spec
from lenna.measure.calibration import dataset_calibration, local_calibrate
from lenna.measure.dataset_open import config_differences, open_dataset
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.ratio_check import check_if_due
from lenna.measure.reference import (
    Calibrate,
    Calibration,
    anchors_in_range,
)
from lenna.measure.run_config import (
    LABEL_VERSION,
    RunConfig,
    check_label_version,
    check_sizes,
    upgrade_config,
)
from lenna.measure.sampler import ONEHOT_OFF, SampleSpec
from lenna.measure.store import Dataset
from lenna.space import SearchSpace, get_space

# the names callers import from here (the run loop's pieces live in their own modules)
__all__ = [
    "DRIFT_TOLERANCE",
    "LABEL_VERSION",
    "Interrupted",
    "RunConfig",
    "check_label_version",
    "check_sizes",
    "config_differences",
    "control_measurement",
    "dataset_calibration",
    "drift_baseline",
    "local_calibrate",
    "measure_sample",
    "open_dataset",
    "record_control",
    "run_measurement",
    "run_op_table",
    "sample_row",
    "stop_on_signals",
    "upgrade_config",
]

DRIFT_TOLERANCE = 0.03


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` so the run stops between commits."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def measure_sample(
    space: SearchSpace,
    cfg: RunConfig,
    spec: SampleSpec,
    index: int,
    calibration: Calibration | None = None,
) -> Measurement:
    """Measure sample ``index`` (``spec = cfg.sampler()(index)``) as its dataset does: the
    same gate seed wherever and whenever it is measured, at the dataset's calibrated speed."""
    return measure_spec(space, spec, cfg.measure, _seed(cfg.seed, index), calibration)


def control_measurement(
    space: SearchSpace,
    cfg: RunConfig,
    calibration: Calibration | None = None,
) -> Measurement:
    """The drift guard's fixed sample: a normal block, one-hot on the first convolution."""
    conv = next(i for i, op in enumerate(space.ops) if "conv" in op.lower())
    alphas = np.full(space.alpha_shape, ONEHOT_OFF)
    alphas[:, conv] = 0.0
    lo, hi = cfg.channels
    channels = round((lo * hi) ** 0.5)
    res = max(r for r in cfg.resolutions)
    return measure_block(
        space,
        "normal",
        channels,
        res,
        alphas,
        cfg.measure,
        -1 % 2**31,
        calibration=calibration,
    )


def sample_row(
    m: Measurement, index: int, regime: str, batch: int, fp_hash: str, trace: bool
) -> dict:
    e = m.estimate
    return {
        "sample_index": index,
        "block_type": m.block_type,
        "channels": m.channels,
        "resolution": m.resolution,
        "batch": batch,
        "regime": regime,
        "alphas": m.alphas,
        "latency_ms": e.latency_ms,
        "rule": e.rule,
        "resets": e.resets,
        "passes": e.passes,
        "ci_half_width_ms": e.ci_half_width_ms if np.isfinite(e.ci_half_width_ms) else None,
        "converged": int(e.converged),
        "wall_s": m.wall_s,
        "fingerprint": fp_hash,
        "drift_flag": 0,
        "load": e.load,
        "trace": {
            "values_ms": e.values_ms,
            "controls_ms": e.controls_ms,
            "references_ms": e.references_ms,
            "reference_ms": e.reference_ms,  # calibrated ms of the reference: Z0 × its ratio
        }
        if trace
        else None,
    }


def run_measurement(
    path: str | Path,
    cfg: RunConfig,
    n: int,
    *,
    allow_mixed: bool = False,
    trace: bool = False,
    on_sample: Callable[[dict, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_check: Callable[[], None] | None = None,
    fp: dict | None = None,
    recalibrate: bool = False,
    on_calibrate: Callable[[], None] | None = None,
) -> int:
    """Measure until ``path`` holds ``n`` sampled rows (rows added by :mod:`extra_rows` do
    not count), then check the anchors' ratios if due
    (``on_check()`` first: it takes seconds); returns the number of rows stored.

    A new file takes this machine's calibration (made once, ``on_calibrate()`` first;
    ``recalibrate``: made anew), so files of one machine share one scale."""
    if n < 0:
        raise InputError(f"-n must be >= 0, got {n}")
    space = get_space(cfg.space)
    m = cfg.measure
    fp = fp or config_fingerprint(m)
    warn = on_warning or (lambda msg: None)
    with open_dataset(path, cfg, fp, allow_mixed) as ds:
        calibrate = local_calibrate(space, m, True, recalibrate, on_calibrate, warn)
        todo = _missing_indices(ds.indices(), n)
        if todo:
            _measure_rows(ds, cfg, todo, calibrate, fp["hash"], trace, on_sample, warn)
        # a check cut short (Ctrl-C) is still due when the same command is run again
        anchors = anchors_in_range(cfg.channels, cfg.resolutions)
        now = local_calibrate(space, m, shared=False)  # the check compares with this moment
        for message in check_if_due(ds, anchors, cfg.drift_every, now, fp["hash"], on_check):
            warn(message)
        return ds.count()


def _measure_rows(
    ds: Dataset,
    cfg: RunConfig,
    todo: list[int],
    calibrate: Calibrate,
    fp_hash: str,
    trace: bool,
    on_sample: Callable[[dict, int], None] | None,
    warn: Callable[[str], None],
) -> None:
    """Measure and commit samples ``todo`` one by one, with the drift guard's control every
    ``cfg.drift_every`` rows."""
    space, sampler, m = get_space(cfg.space), cfg.sampler(), cfg.measure
    cal = dataset_calibration(ds, cfg, calibrate)
    base = (
        drift_baseline(ds, lambda: control_measurement(space, cfg, cal).latency_ms)
        if cfg.drift_every
        else 0.0  # unused: no controls without the guard
    )
    since_check: list[int] = []
    for index in todo:
        spec = sampler(index)
        meas = measure_sample(space, cfg, spec, index, cal)
        row = sample_row(meas, index, spec.regime, m.batch, fp_hash, trace)
        ds.add_sample(row)
        since_check.append(index)
        count = ds.count()
        if on_sample:
            on_sample(row, count)
        if cfg.drift_every and len(since_check) >= cfg.drift_every:
            ctrl = control_measurement(space, cfg, cal).latency_ms
            message = record_control(ds, base, ctrl, since_check)
            if message:
                warn(message)
            since_check = []


def drift_baseline(ds: Dataset, measure: Callable[[], float]) -> float:
    """The control sample's first value: stored in the file, so a resumed run (and every
    device of a fleet) compares its controls with the same one; ``measure()`` if none yet."""
    base = ds.meta.get("drift_baseline_ms")
    if base is None:
        base = measure()
        ds.set_meta("drift_baseline_ms", base)
    return float(base)


def record_control(
    ds: Dataset, base: float, ctrl_ms: float, since: list[int], device: str | None = None
) -> str | None:
    """Store one control measurement; if it moved more than :data:`DRIFT_TOLERANCE` from
    ``base``, flag rows ``since`` (measured since the last control; on ``device`` of a
    fleet, None for a local run) and return the warning to show."""
    rel = (ctrl_ms - base) / base
    flagged = abs(rel) > DRIFT_TOLERANCE
    ds.add_drift(ds.count(), ctrl_ms, rel, since if flagged else [], device)
    if not flagged:
        return None
    where = f" on {device}" if device else ""
    return (
        f"drift{where}: the control sample moved {rel:+.1%} from its first value "
        f"({ctrl_ms:.3f} vs {base:.3f} ms); the last {len(since)} rows{where} "
        "are flagged (drift_flag = 1)"
    )


def _missing_indices(have: set[int], n: int) -> list[int]:
    """The first ``n - len(have)`` indices not yet stored (rows beyond ``n`` are kept).
    Only sampled rows count (indices from 0 up; added blocks have negative ones)."""
    have = {i for i in have if i >= 0}
    out, i = [], 0
    while len(have) + len(out) < n:
        if i not in have:
            out.append(i)
        i += 1
    return out


def _seed(seed: int, index: int) -> int:
    """Per-sample seed for weights and gate sampling, stable across resumes."""
    return int(np.random.default_rng([seed, index, 1]).integers(2**31))


def run_op_table(
    path: str | Path,
    cfg: RunConfig,
    channels: tuple[int, int] | None = None,
    resolutions: tuple[int, ...] | None = None,
    passes: int = 20,
    allow_mixed: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_shape: Callable[[list[dict]], None] | None = None,
) -> int:
    """Measure the op table of ``cfg``'s space into ``path`` (resumes: measured shapes are
    skipped); ``on_start(total, done)`` then ``on_shape(rows)`` per shape. Returns the row
    count."""
    from lenna.measure.optable import channel_grid, measure_op_table, op_grid

    if passes < 1:
        raise InputError(f"passes must be >= 1, got {passes}")
    m = cfg.measure
    fp = config_fingerprint(m)
    check_sizes(cfg, (channels or cfg.channels)[1])
    grid = channel_grid(*(channels or cfg.channels))
    grid_shapes = op_grid(grid, list(resolutions or cfg.resolutions), list(cfg.block_types))
    with open_dataset(path, cfg, fp, allow_mixed) as ds:
        have = ds.op_table()
        have = have[(have["fingerprint"] == fp["hash"]) & (have["batch"] == m.batch)]
        done = set(zip(have["block_type"], have["resolution"], have["channels"], strict=True))
        shapes = [s for s in grid_shapes if s not in done]  # a rerun resumes, not redoes
        if on_start:
            on_start(len(grid_shapes), len(grid_shapes) - len(shapes))

        def store(rows: list[dict]) -> None:
            ds.add_ops(rows)
            if on_shape:
                on_shape(rows)

        space = get_space(cfg.space)
        cal = (
            dataset_calibration(
                ds,
                cfg,
                local_calibrate(space, m),
                (min(grid), max(grid)),
                tuple(resolutions or cfg.resolutions),
            )
            if shapes
            else Calibration()
        )
        measure_op_table(
            space,
            shapes,
            m,
            passes,
            fp["hash"],
            on_shape=store,
            calibration=cal,
        )
        return len(ds.op_table())
