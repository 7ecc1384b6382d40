"""A local measuring run: sample → measure → commit, resumable, with a drift guard (a control
sample every K rows and, with matched references, an end-of-run check of the anchors' ratios).

The run is a pure function of (space, sampler config, measurement config, N): sample ``i``
is always the same block, so a run interrupted at any point (Ctrl-C, SIGTERM, ``kill -9``)
and started again completes the same dataset, with no duplicates. The loop itself is
:mod:`lenna.measure.measuring_loop`, shared with a fleet run; here is what one sample and one
control are, and this process as the loop's one device. Nothing here prints; the CLI passes
callbacks for progress and warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lenna.errors import InputError
from lenna.measure.block_measure import Measurement, measure_block, measure_spec
from lenna.measure.calibration import dataset_calibration, local_calibrate
from lenna.measure.dataset_open import config_differences, open_dataset, run_fingerprint
from lenna.measure.devices import CONTROL, Job
from lenna.measure.drift_guard import DRIFT_TOLERANCE, drift_baseline, record_control
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.measuring_loop import MeasuringLoop
from lenna.measure.op_table_run import run_op_table
from lenna.measure.reference import Calibrate, Calibration
from lenna.measure.run_config import (
    LABEL_VERSION,
    RunConfig,
    check_label_version,
    check_sizes,
    upgrade_config,
)
from lenna.measure.sampler import ONEHOT_OFF, SampleSpec
from lenna.signals import Interrupted, stop_on_signals
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
    "measure_row",
    "measure_sample",
    "open_dataset",
    "record_control",
    "run_measurement",
    "run_op_table",
    "sample_row",
    "stop_on_signals",
    "upgrade_config",
]


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
    """A measurement as the dataset's row (sampled or added); ``trace``: keep every reset's
    values, for ``lenna plot convergence``."""
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
            "expected_control_ms": e.expected_control_ms,  # the control's known mean (cv)
        }
        if trace
        else None,
    }


def measure_row(
    space: SearchSpace,
    cfg: RunConfig,
    spec: SampleSpec,
    index: int,
    calibration: Calibration | None,
    fp_hash: str,
    trace: bool = False,
) -> dict:
    """Sample ``index`` (``spec = cfg.sampler()(index)``) measured and made into its row: the
    one way a row is made, in this process or on a fleet's device."""
    meas = measure_sample(space, cfg, spec, index, calibration)
    return sample_row(meas, index, spec.regime, cfg.measure.batch, fp_hash, trace)


class _ThisProcess:
    """This process as the measuring loop's one device: a job runs when the loop waits for
    it, so a local run measures, stores and checks strictly one thing after another."""

    def __init__(
        self, space: SearchSpace, cfg: RunConfig, fp_hash: str, trace: bool, shared: Calibrate
    ) -> None:
        self.space, self.cfg, self.trace, self.shared = space, cfg, trace, shared
        self.names: list[str | None] = [None]  # a local run's rows and controls name no device
        self.hashes, self.real = [fp_hash], [True]
        self.sampler = cfg.sampler()
        self.pending: tuple[Job, Calibration] | None = None

    def submit(self, device: int, job: Job, calibration: Calibration) -> None:
        self.pending = (job, calibration)

    def wait(self) -> tuple[int, object]:
        assert self.pending is not None, "wait() with no job submitted"
        (job, cal), self.pending = self.pending, None
        if job is CONTROL:
            return 0, control_measurement(self.space, self.cfg, cal).latency_ms
        spec = self.sampler(job)
        return 0, measure_row(self.space, self.cfg, spec, job, cal, self.hashes[0], self.trace)

    def calibrator(self, device: int, shared: bool) -> Calibrate:
        return self.shared if shared else local_calibrate(self.space, self.cfg.measure, False)


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
    ``on_sample(row, rows in the file)`` after each commit.

    A new file takes this machine's calibration (made once, ``on_calibrate()`` first;
    ``recalibrate``: made anew), so files of one machine share one scale."""
    if n < 0:
        raise InputError(f"-n must be >= 0, got {n}")
    space = get_space(cfg.space)
    m = cfg.measure
    fp = fp or config_fingerprint(m)
    warn = on_warning or (lambda msg: None)
    with open_dataset(path, cfg, fp, allow_mixed) as ds:
        fp = run_fingerprint(ds, fp)
        shared = local_calibrate(space, m, True, recalibrate, on_calibrate, warn)
        here = _ThisProcess(space, cfg, fp["hash"], trace, shared)

        def on_row(row: dict, sampled: int, device: str | None) -> None:
            if on_sample:
                on_sample(row, ds.count())

        MeasuringLoop(ds, cfg, here, warn).measure_to(n, on_row, on_check)
        return ds.count()


def _seed(seed: int, index: int) -> int:
    """Per-sample seed for weights and gate sampling, stable across resumes."""
    return int(np.random.default_rng([seed, index, 1]).integers(2**31))
