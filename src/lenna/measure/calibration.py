"""A run's calibration: this machine's (shared by its files) or of this moment, and a dataset's
stored one completed with what it lacks."""

from __future__ import annotations

from collections.abc import Callable

from lenna.measure.config import MeasureConfig
from lenna.measure.machine_calibration import machine_calibrate
from lenna.measure.reference import (
    MATCHED,
    Calibrate,
    Calibration,
    anchor_key,
    anchors_in_range,
    calibrate_for,
    calibrate_ratios,
)
from lenna.measure.run_config import RunConfig
from lenna.measure.store import Dataset
from lenna.space import SearchSpace


def local_calibrate(
    space: SearchSpace,
    m: MeasureConfig,
    shared: bool = True,
    fresh: bool = False,
    on_calibrate: Callable[[], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Calibrate:
    """Calibrate here: ``(need_z0, anchors)`` → (``Z0`` or ``None``, the anchors' ratios).

    ``shared`` (what sets a dataset's scale): this machine's calibration, from the cache or
    made once and kept there (:mod:`lenna.measure.machine_calibration`); ``fresh`` makes it
    anew. Unshared: a calibration of this moment (what the anchor check compares with)."""

    def calibrate(need_z0: bool, anchors: list[tuple[int, int]]) -> tuple:
        return (calibrate_for(space, m) if need_z0 else None), calibrate_ratios(space, m, anchors)

    if not shared:
        return calibrate
    threads = m.threads or 1
    return machine_calibrate(
        space,
        m.device,
        m.dtype,
        threads,
        calibrate,
        fresh=fresh,
        on_calibrate=on_calibrate,
        on_warning=on_warning,
        backend=m.backend,
    )


def dataset_calibration(
    ds: Dataset,
    cfg: RunConfig,
    calibrate: Calibrate,
    channels: tuple[int, int] | None = None,
    resolutions: tuple[int, ...] | None = None,
) -> Calibration:
    """The dataset's calibration: ``Z0`` and, with matched references, the ratios of the
    anchors that blocks of ``channels`` × ``resolutions`` (default: the config's) need. What
    is missing is calibrated by ``calibrate`` and stored, so every row, resumed run and fleet
    device reports at one speed. Empty if not normalised."""
    m = cfg.measure
    if not m.normalise:
        return Calibration()
    z0 = ds.meta.get("reference_ms")
    stored = dict(ds.meta.get("reference_ratios") or {})
    need = (
        anchors_in_range(channels or cfg.channels, resolutions or cfg.resolutions, m.reference)
        if m.reference in MATCHED
        else []
    )
    missing = [a for a in need if anchor_key(a) not in stored]
    if z0 is None or missing:
        new_z0, ratios = calibrate(z0 is None, missing)
        if z0 is None:
            z0 = new_z0
            ds.set_meta("reference_ms", z0)
        if missing:
            stored.update(ratios)
            ds.set_meta("reference_ratios", stored)
    return Calibration(float(z0), stored if m.reference in MATCHED else None)
