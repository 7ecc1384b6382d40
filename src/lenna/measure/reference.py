"""The reference block: this machine's speed, timed alongside every gate reset.

Why: on a shared machine the speed drifts by ±10 % over 0.1–10 s, and a block and a fixed
reference slow down together (``benchmarks/diagnostics/speed_drift.py``: window medians of the two
correlated 0.93–0.98 on a quiet machine, only 0.6–0.7 on a loaded one). A label averaged
over a few seconds inherits whatever the machine did in those seconds, so two measurements
of one block differed by ~5 % even with a ±1 % confidence interval each. Timing the
reference right after each path and keeping the ratio path / reference cancels that drift;
multiplying by the reference's calibrated time ``Z0`` turns the ratio back into milliseconds
*at the calibrated speed*. A dataset calibrates ``Z0`` once and stores it, so every row (and
every resumed run, and every device of a fleet) is expressed at the same speed.

The reference is a fixed normal block of the same space (one path drawn with a fixed seed),
so it runs the same kinds of kernels as the blocks it normalises. ``Z0`` is the calibrated
time of the *primary* reference (16 channels, 16×16).

Matched references (``MeasureConfig.reference = "matched"``, the default): a small reference
shares little of a large block's drift, most of all with 2 threads (a 2-vCPU machine, 40 s
alternating, windows of 20 resets: C=128 32×32 block over the 16×16 reference 4.3 % window
spread, over a C=128 32×32 reference 1.6 %). So each block is timed alongside the *anchor*
nearest to it in log(C·H) (:data:`ANCHORS`); an anchor's calibrated time is ``Z0`` times its
speed ratio to the primary, calibrated on interleaved passes (:func:`anchor_ratios`) and
stored with the dataset, so one scalar ``Z0`` still defines the dataset's speed.

Narrow references (``"narrow"``, the default under ONNX Runtime): in ORT, blocks under 16
channels did not share the drift of the 16-channel primary at all on a busy shared host
(``benchmarks/diagnostics/ort_small_anchor.py``, windows of 20 resets: C = 8–15 blocks at
8×8 and 16×16 over the primary spread 7–13 %, over an 8-channel anchor of their resolution
2.0–3.2 %; C = 24–48 blocks the other way round, 1.7–4.2 % over the primary, 11–16 % over
the 8-channel one). A plausible cause, not checked: under 16 channels ORT runs other
kernels than its channel-blocked ones, and a neighbour's load slows the two kinds
differently. So blocks under
:data:`NARROW_BELOW` channels are timed beside the 8-channel anchor nearest in resolution
(:data:`NARROW_ANCHORS`), the others as ``matched``.

Known bias (``single``, less so ``matched``): labels are not exactly "the block alone at the
calibrated speed" (``benchmarks/diagnostics/label_bias.py``, one-hot blocks, 1 thread: with the
single reference −2 % to −16 % by size, per-anchor medians; matched anchors a median −0.7 % to
−2.4 % over four runs, per block −8 % to +6 %). The size trend comes from timing a block in
turns with a small reference (the same block in turns with the primary, no gate resets:
−1 % to −13 % by size), consistent with a large block's cache footprint slowing the
reference's next pass, while ``Z0`` is calibrated on back-to-back passes; a matched anchor
cancels most of it. At the primary anchor about 1 % comes from the turns and 1.4–2.1 % from the
gate resets, all of it (where tested) from the untimed pass after each reset, after which a
group's first timed pass follows the block's own pass; how a label summarises its passes is
not a cause. The offset is systematic (it hardly hurts repeatability) but shifts labels
against a block timed alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lenna.errors import InputError
from lenna.measure.backend import DISCARD_PASSES
from lenna.measure.ort_path import PathSessions
from lenna.measure.threads import torch_threads
from lenna.measure.timer import Timer
from lenna.space import Block, SearchSpace

if TYPE_CHECKING:
    from lenna.measure.config import MeasureConfig

CHANNELS, RESOLUTION, SEED = 16, 16, 0
# (channels, resolution) of the reference blocks; the first is the primary, whose time is Z0
ANCHORS: tuple[tuple[int, int], ...] = ((CHANNELS, RESOLUTION), (32, 32), (64, 32))
# ``narrow`` references: blocks below NARROW_BELOW channels are timed beside an 8-channel
# anchor of the nearest resolution (module docstring)
NARROW_BELOW = 16
NARROW_ANCHORS: tuple[tuple[int, int], ...] = ((8, 8), (8, 16), (8, 32))
MATCHED = ("matched", "narrow")  # the reference modes that pick an anchor per block


def anchors_of(reference: str) -> tuple[tuple[int, int], ...]:
    """Every anchor a reference mode can time a block beside (the primary first)."""
    if reference == "narrow":
        return ANCHORS + NARROW_ANCHORS
    return ANCHORS if reference == "matched" else ANCHORS[:1]


# how a dataset gets calibrated: (need Z0, anchors) -> (Z0 or None, the anchors' ratios)
Calibrate = Callable[[bool, list[tuple[int, int]]], tuple[float | None, dict[str, float]]]


class Reference:
    """A fixed gated block on ``device``, ready to be timed between a path's passes."""

    def __init__(
        self,
        space: SearchSpace,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        size: tuple[int, int] = (CHANNELS, RESOLUTION),
        backend: str = "torch",
        threads: int = 1,
    ):
        dev = torch.device(device)
        channels, resolution = self.size = size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            alphas = np.zeros(space.alpha_shape)
            self.block = Block(space, "normal", channels, "gated", alphas).to(dev, dtype).eval()
            shape = (1, channels, resolution, resolution)
            self.inputs = tuple(torch.randn(shape).to(dev, dtype) for _ in range(space.num_inputs))
        self.timer = Timer(dev)
        with torch.inference_mode():
            self.block.reset_gates(torch.Generator().manual_seed(SEED))
            if backend == "onnxruntime":  # the same fixed path, as ORT runs it
                sessions = PathSessions(self.block, self.inputs, threads)
                sessions.open()
                self._run = sessions.run  # type: ignore[method-assign]
            for _ in range(DISCARD_PASSES[backend] + 2):
                self._run()

    def _run(self) -> None:
        self.block(*self.inputs)

    @torch.inference_mode()
    def time_s(self) -> float:
        """Seconds of one pass."""
        return self.timer(self._run)

    def calibrate(
        self, passes: int = 3, window_s: float = 1.0, tol: float = 0.01, max_windows: int = 20
    ) -> float:
        """``Z0`` in ms: the 10th percentile of min-of-``passes`` values over a 1-s window,
        repeated until two windows agree within ``tol`` (a process's first seconds run slow).

        A low quantile, because interference only ever adds time: it estimates the machine's
        uncontended speed, which is what a label at "the calibrated speed" should mean. If no
        two windows agree, the median of the windows' values.
        """
        return _settle(lambda: _low_quantile_s(self, passes, window_s) * 1e3, tol, max_windows, min)


def time_paired(
    timer: Callable[[Callable[[], object]], float],
    run: Callable[[], object],
    reference: Reference | None,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of ``n`` passes of ``run`` and of the reference, interleaved pass by pass so
    both see the same moments of the machine (the benches' ``paired``)."""
    if reference is None:
        raise RuntimeError("this bench has no reference block")
    y, z = np.empty(n), np.empty(n)
    for i in range(n):
        y[i] = timer(run)
        z[i] = reference.time_s()
    return y, z


def calibrate_ratio(
    anchor: Reference,
    primary: Reference,
    passes: int = 3,
    window_s: float = 1.0,
    tol: float = 0.01,
    max_windows: int = 20,
) -> float:
    """The anchor's calibrated time over the primary's, each estimated as ``Z0`` is (10th
    percentile of back-to-back min-of-``passes`` values), in alternating half-windows so both
    see nearly the same machine; repeated until two windows' ratios agree within ``tol``
    (their mean), else the median of the windows' ratios."""

    def window() -> float:
        p = _low_quantile_s(primary, passes, window_s / 2)
        return _low_quantile_s(anchor, passes, window_s / 2) / p

    return _settle(window, tol, max_windows, lambda a, b: (a + b) / 2)


def _low_quantile_s(ref: Reference, passes: int, window_s: float) -> float:
    """The 10th percentile of back-to-back min-of-``passes`` times over ``window_s`` (at
    least 10 values): the machine's uncontended speed, as interference only adds time."""
    t0, values = time.perf_counter(), []
    while time.perf_counter() - t0 < window_s or len(values) < 10:
        values.append(min(ref.time_s() for _ in range(passes)))
    return float(np.quantile(values, 0.1))


def _settle(
    window: Callable[[], float],
    tol: float,
    max_windows: int,
    combine: Callable[[float, float], float],
) -> float:
    """Repeat ``window()`` until two consecutive values agree within ``tol`` (of the earlier)
    and ``combine`` them; if none do within ``max_windows``, the median of all (a process's
    first seconds run slow, and a loaded spell may never settle)."""
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    values: list[float] = []
    for _ in range(max_windows):
        values.append(window())
        if len(values) > 1 and abs(values[-1] - values[-2]) <= tol * values[-2]:
            return float(combine(values[-2], values[-1]))
    return float(np.median(values))


def anchor_for(channels: int, resolution: int, reference: str = "matched") -> tuple[int, int]:
    """The anchor a block of ``channels`` × ``resolution``² is timed beside: the one nearest in
    log(C·H); with ``narrow`` references, below :data:`NARROW_BELOW` channels the 8-channel
    anchor nearest in resolution."""
    if reference == "narrow" and channels < NARROW_BELOW:
        h = np.log(resolution)
        return min(NARROW_ANCHORS, key=lambda a: abs(np.log(a[1]) - h))
    size = np.log(channels * resolution)
    return min(ANCHORS, key=lambda a: abs(np.log(a[0] * a[1]) - size))


def anchor_key(size: tuple[int, int]) -> str:
    """How an anchor is named in a dataset's stored ratios: ``"CxH"``."""
    return f"{size[0]}x{size[1]}"


def anchor_label(key: str) -> str:
    """How an anchor is named to a person: ``"64x32"`` reads as ``"64 ch 32×32"``, the docs'
    notation (a bare "64x32" is easily read as a resolution)."""
    c, _, h = key.partition("x")
    return f"{c} ch {h}×{h}" if c.isdigit() and h.isdigit() else key


_REFERENCES: dict[tuple, Reference] = {}
_Z0: dict[tuple, float] = {}
_RATIOS: dict[tuple, dict[str, float]] = {}


def reference_for(
    space: SearchSpace,
    device: str = "cpu",
    dtype: str = "float32",
    size: tuple[int, int] = (CHANNELS, RESOLUTION),
    backend: str = "torch",
    threads: int = 1,
) -> Reference:
    """One reference per (space, device, dtype, size, backend) and process: building one costs
    a few passes. An ONNX Runtime session's threads are fixed when it opens, so they are part
    of its key."""
    from lenna.measure.config import DTYPES

    key = (space.definition_hash(), device, dtype, tuple(size), backend)
    if backend != "torch":
        key += (threads,)
    if key not in _REFERENCES:
        _REFERENCES[key] = Reference(space, device, DTYPES[dtype], tuple(size), backend, threads)
    return _REFERENCES[key]


def config_reference(
    space: SearchSpace, config: MeasureConfig, size: tuple[int, int] = (CHANNELS, RESOLUTION)
) -> Reference:
    """:func:`reference_for` under ``config`` (device, dtype, backend, threads)."""
    return reference_for(
        space, config.device, config.dtype, size, config.backend, config.threads or 1
    )


def anchors_in_range(
    channels: tuple[int, int], resolutions: Iterable[int], reference: str = "matched"
) -> list[tuple[int, int]]:
    """The anchors that blocks of ``channels`` (min, max) at ``resolutions`` can be timed
    alongside under ``reference`` (only these need a calibrated ratio)."""
    lo, hi = channels
    out = set()
    wide = lo
    if reference == "narrow" and lo < NARROW_BELOW:
        out.update(anchor_for(lo, r, reference) for r in resolutions)
        wide = NARROW_BELOW
    for r in resolutions if hi >= wide else ():
        first, last = ANCHORS.index(anchor_for(wide, r)), ANCHORS.index(anchor_for(hi, r))
        out.update(ANCHORS[min(first, last) : max(first, last) + 1])
    return [a for a in anchors_of(reference) if a in out]


def calibrate_ratios(
    space: SearchSpace, config: MeasureConfig, anchors: Iterable[tuple[int, int]] | None = None
) -> dict[str, float]:
    """A fresh calibration of ``anchors``' ratios to the primary under ``config``
    (``"CxH"`` → ratio; the primary's is 1), as a new dataset stores it."""
    anchors = anchors_of(config.reference) if anchors is None else anchors
    with torch_threads(config.threads):
        primary = config_reference(space, config)
        return {
            anchor_key(a): 1.0
            if tuple(a) == ANCHORS[0]
            else calibrate_ratio(config_reference(space, config, a), primary)
            for a in anchors
        }


def anchor_ratios(space: SearchSpace, config: MeasureConfig) -> dict[str, float]:
    """:func:`calibrate_ratios` once per process and setting, for callers outside a dataset
    (a dataset passes its stored ratios instead)."""
    key = (space.definition_hash(), config.device, config.dtype, config.threads or 1)
    key += (config.backend, config.reference)
    if key not in _RATIOS:
        _RATIOS[key] = calibrate_ratios(space, config)
    return dict(_RATIOS[key])


def calibrate_for(space: SearchSpace, config: MeasureConfig) -> float:
    """A fresh ``Z0`` for a dataset measured under ``config`` (at its threads)."""
    with torch_threads(config.threads):
        return config_reference(space, config).calibrate()


@dataclass(frozen=True)
class Calibration:
    """The speed a dataset's labels are at: ``z0_ms``, the primary anchor's calibrated time,
    and ``ratios``, each other anchor's time to it (``"CxH"`` keys). One value instead of a
    (time, ratios) pair through every call. ``None`` parts are calibrated here, once per
    process (a label outside any dataset)."""

    z0_ms: float | None = None
    ratios: Mapping[str, float] | None = None

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Calibration:
        """A dataset's stored calibration (meta ``reference_ms`` and ``reference_ratios``;
        ``lenna dataset info --json`` shows both)."""
        ratios = meta.get("reference_ratios")
        z0 = meta.get("reference_ms")
        return cls(None if z0 is None else float(z0), None if ratios is None else dict(ratios))


def normalisation(
    space: SearchSpace,
    config: MeasureConfig,
    calibration: Calibration | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[Reference | None, float | None]:
    """The reference block to time alongside under ``config`` and its time at the calibrated
    speed: ``(None, None)`` when it does not normalise. ``calibration``: a dataset's stored
    one; what it lacks is calibrated once per process. With ``size`` (the block's channels,
    resolution) and a matched ``config.reference``: the block's anchor, at ``Z0`` × its
    ratio."""
    if not config.normalise:
        return None, None
    calibration = calibration or Calibration()
    reference_ms, ratios = calibration.z0_ms, calibration.ratios
    if reference_ms is None:
        reference_ms = calibrated_ms(
            space, config.device, config.dtype, config.threads, config.backend
        )
    anchor = ANCHORS[0]
    if size is not None and config.reference in MATCHED:
        anchor = anchor_for(*size, config.reference)
    if anchor == ANCHORS[0]:
        return config_reference(space, config), reference_ms
    if ratios is None:
        ratios = anchor_ratios(space, config)
    if anchor_key(anchor) not in ratios:
        raise InputError(
            f"no calibrated ratio for reference anchor {anchor_label(anchor_key(anchor))} "
            f"(this dataset has: {', '.join(map(anchor_label, ratios)) or 'none'})"
        )
    ratio = float(ratios[anchor_key(anchor)])
    return config_reference(space, config, anchor), reference_ms * ratio


def calibrated_ms(
    space: SearchSpace,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = 1,
    backend: str = "torch",
) -> float:
    """``Z0`` for callers outside a dataset: one calibration per process and setting."""
    threads = threads or 1
    key = (space.definition_hash(), device, dtype, threads, backend)
    if key not in _Z0:
        with torch_threads(threads):
            ref = reference_for(space, device, dtype, backend=backend, threads=threads)
            _Z0[key] = ref.calibrate()
    return _Z0[key]
