"""A fleet device's side: the Ray actor's body, which measures samples of one dataset config.

Why apart from the driver: this is what runs on each target device (one actor per device,
placed by the ``lenna_device`` resource); it makes rows exactly as a local run does
(:func:`lenna.measure.runner.measure_row`), so sample *i* is the same row wherever it is
measured. ``simulate_s`` replaces the timer with a sleep (for scaling benchmarks on a small
machine); such rows carry a fingerprint marked ``simulated``.
"""

from __future__ import annotations

import time
from typing import Any

from lenna.measure.calibration import local_calibrate
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.reference import Calibration
from lenna.measure.run_config import RunConfig
from lenna.measure.runner import control_measurement, measure_row
from lenna.space import get_space


class Measurer:
    """The actor's body: measures samples of one dataset config on its device."""

    def __init__(self, cfg: dict, simulate_s: float | None = None) -> None:
        self.cfg = RunConfig.from_dict(cfg)
        self.simulate_s = simulate_s
        m = self.cfg.measure
        self.fp = config_fingerprint(m, simulated=bool(simulate_s))

    def fingerprint(self) -> dict:
        return self.fp

    def adopt(self, fp: dict) -> None:
        """Write rows under ``fp``: the dataset's own record of this machine, made before
        newer fingerprint keys existed (:func:`~lenna.measure.dataset_open.run_fingerprint`)."""
        self.fp = fp

    def calibrate(
        self, need_z0: bool, anchors: list[tuple[int, int]], shared: bool = True
    ) -> tuple:
        """This device's reference time ``Z0`` (if ``need_z0``) and the ratios of
        ``anchors`` (the dataset stores the first device's): its machine's calibration
        (``shared``) or one of this moment (the anchor check)."""
        m = self.cfg.measure
        return local_calibrate(get_space(self.cfg.space), m, shared)(need_z0, anchors)

    def control(self, calibration: Calibration | None = None) -> float:
        """The drift guard's control sample, measured on this device (ms)."""
        cfg = self.cfg
        return control_measurement(get_space(cfg.space), cfg, calibration).latency_ms

    def measure(self, index: int, calibration: Calibration | None = None) -> dict:
        """Sample ``index``'s row, as a local run would make it (no trace)."""
        cfg, m = self.cfg, self.cfg.measure
        spec = cfg.sampler()(index)
        if self.simulate_s:
            return _simulated_row(spec, index, m.batch, self.fp["hash"], self.simulate_s)
        return measure_row(get_space(cfg.space), cfg, spec, index, calibration, self.fp["hash"])


def _simulated_row(spec: Any, index: int, batch: int, fp_hash: str, sleep_s: float) -> dict:
    """A row whose "latency" is a deterministic function of the block, after a sleep."""
    t0 = time.perf_counter()
    time.sleep(sleep_s)
    ms = (
        0.05
        * spec.channels
        * (spec.resolution / 8) ** 2
        * (1.5 if spec.block_type == "reduction" else 1)
    )
    return {
        "sample_index": index,
        "block_type": spec.block_type,
        "channels": spec.channels,
        "resolution": spec.resolution,
        "batch": batch,
        "regime": spec.regime,
        "alphas": spec.alphas,
        "latency_ms": float(ms),
        "rule": "simulated",
        "resets": 0,
        "passes": 0,
        "ci_half_width_ms": None,
        "converged": 1,
        "wall_s": time.perf_counter() - t0,
        "fingerprint": fp_hash,
        "drift_flag": 0,
        "load": None,
        "trace": None,
    }
