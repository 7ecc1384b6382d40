"""The load guard: a measurement taken while its reference ran slow is taken again.

Why: under ONNX Runtime a label measured while the reference block ran 15 % or more slower
than at calibration read low (the reference had slowed, the path much less, so the ratio that
should cancel the slowdown divided the label by it); measured again at ordinary load such rows
came back 4–30 % higher. Labels and the derived network's cells are guarded alike, so both
sides of a prediction error are measured the same way (docs/measurement.md, the load guard).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lenna.measure.config import LOAD_RETRIES
from lenna.measure.rules import Estimate


def guarded(measure: Callable[[], Estimate], max_load: float) -> Estimate:
    """``measure()``, taken again (up to :data:`LOAD_RETRIES` more times) while its load is
    above ``max_load``; the try at the lowest load is kept. ``max_load`` 0: one try. A load
    that is unknown (not normalised) or not finite is not judged."""
    estimate = measure()
    for _ in range(LOAD_RETRIES if max_load else 0):
        if not (_known(estimate.load) and estimate.load > max_load):
            break
        again = measure()  # more resets, the same module
        if _known(again.load) and again.load < estimate.load:
            estimate = again
    return estimate


def _known(load: float | None) -> bool:
    return load is not None and math.isfinite(load)
