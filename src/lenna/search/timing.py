"""How the predictor's labels were timed, so that everything LENNA measures for a search (the
network's fixed part, the derived network) is timed alike and at the same speed."""

from __future__ import annotations

from collections.abc import Mapping

from lenna.measure.config import MeasureConfig
from lenna.measure.reference import Calibration
from lenna.predict.base import Predictor


def measured_as(predictor: Predictor) -> dict:
    """The timing settings of the predictor's labels (device, threads, batch, dtype, backend,
    machine hash), its dataset's calibrated reference time and its anchors' stored ratios."""
    fp = predictor.info.get("fingerprint") or {}
    rec = {k: fp[k] for k in ("device", "threads", "batch", "dtype", "hash") if k in fp}
    rec["backend"] = fp.get("backend", "torch")
    rec["reference_ms"] = predictor.info.get("reference_ms")
    if predictor.info.get("reference"):
        rec["reference"] = predictor.info["reference"]
    if predictor.info.get("reference_ratios"):
        rec["reference_ratios"] = dict(predictor.info["reference_ratios"])
    return rec


def calibration_from(rec: Mapping, config: MeasureConfig) -> Calibration:
    """The labels' calibration to time at (``Z0`` and the stored anchor ratios), when
    ``config`` normalises; else none. The ratios only for cells timed beside the record's
    own reference mode; none for an older predictor that did not keep them."""
    if not config.normalise:
        return Calibration()
    z0 = rec.get("reference_ms")
    ratios = rec.get("reference_ratios") if config.reference == rec.get("reference") else None
    return Calibration(None if z0 is None else float(z0), dict(ratios) if ratios else None)


def measure_config_from(
    rec: Mapping,
    device: str | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> MeasureConfig:
    """Measure as recorded in ``rec`` (:func:`measured_as`) unless told otherwise; else the
    datasets' defaults.

    Normalised to the dataset's reference time only when the labels were normalised and the
    device, threads and backend are the recorded ones: a ``Z0`` from another setting means
    nothing. Then the cells are timed beside the references the labels were (``matched`` or
    ``narrow``), else the backend's default."""
    recorded = rec.get("backend") or "torch"
    same = (
        (device is None or device == rec.get("device"))
        and (threads is None or threads == rec.get("threads"))
        and (backend is None or backend == recorded)
    )
    return MeasureConfig(
        device=device if device is not None else rec.get("device") or "cpu",
        threads=threads if threads is not None else rec.get("threads"),
        batch=int(rec.get("batch") or 1),
        dtype=rec.get("dtype") or "float32",
        normalise=rec.get("reference_ms") is not None and same,
        backend=backend or recorded,
        reference=rec.get("reference") if same else None,
    )
