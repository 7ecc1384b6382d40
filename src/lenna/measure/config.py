"""Measurement configuration: everything that changes what a label means.

A dataset stores its config; resuming with a different one is refused, because rows measured
under two configs are not one distribution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from lenna.errors import InputError
from lenna.limits import MAX_THREADS
from lenna.measure.backend import check_backend
from lenna.measure.rules import CIRule, SeedRule, make_rule
from lenna.measure.timer import resolve_device

REFERENCES = ("matched", "narrow", "single")
AUTO_MAX_LOAD = {"onnxruntime": 1.15}  # per backend; any other: off
LOAD_RETRIES = 2  # at most this many more tries of a label measured above max_load
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class MeasureConfig:
    """How a block is timed.

    ``threads=None`` means 1: on a shared 2-vCPU machine two threads wait on each other
    whenever one vCPU is descheduled, and per-pass noise rose from 4–8 % to 22–33 %
    (benchmarks/RESULTS.md). Pass ``threads`` to measure a multi-threaded deployment.

    ``normalise``: time a reference block alongside every reset and report the label at the
    dataset's calibrated speed (:mod:`lenna.measure.reference`). ``None`` (default) means on,
    except for the ``seed`` rule, which stays the seed's rule exactly (asking for both is
    refused).

    ``reference``: ``"matched"`` times each block alongside the reference anchor nearest its
    size, ``"narrow"`` does too but times blocks under 16 channels alongside an 8-channel
    anchor, ``"single"`` always alongside the 16-channel 16×16 one (files from before
    anchors). Matched shares more of a large block's drift, most of all with 2 threads; under
    ONNX Runtime a narrow block's drift is shared by a narrow anchor only
    (``benchmarks/diagnostics/ort_small_anchor.py``). ``None`` (default): ``"narrow"`` for
    ``onnxruntime``, else ``"matched"``. Without normalisation it is always ``"single"``
    (nothing is timed alongside).

    ``backend``: the runtime a label is the time of, ``"torch"`` (eager mode) or
    ``"onnxruntime"`` (:mod:`lenna.measure.backend`).

    ``max_load``: a normalised label whose :attr:`~lenna.measure.rules.Estimate.load` is above
    it is measured again (up to :data:`LOAD_RETRIES` times) and the try at the lowest load is
    kept; ``0`` is off. Why: under ONNX Runtime a row measured while its reference ran 15 % or
    more slower than at calibration read low (the reference had slowed, the path less):
    27 such rows of ``darts-ort-v4-zen5.db`` measured again came back 4–30 % higher (median
    13 %), rows at ordinary load 0.9 % apart. Eager labels showed no such bias. ``None``
    (default): 1.15 for normalised ``onnxruntime`` labels, else 0. Not part of what a label
    means: a file resumes under another ``max_load`` (one from before the guard: 0 unless
    asked).
    """

    rule: str = "cv"
    rule_params: dict = field(default_factory=dict)
    batch: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None
    warmup_passes: int = 1
    op_passes: int = 15
    normalise: bool | None = None
    reference: str | None = None
    backend: str = "torch"
    max_load: float | None = None

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"batch must be >= 1, got {self.batch}")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of: {', '.join(DTYPES)}")
        if self.threads is None:
            self.threads = 1
        if not 1 <= self.threads <= MAX_THREADS:
            raise InputError(f"threads must be from 1 to {MAX_THREADS}, got {self.threads}")
        resolve_device(self.device)
        check_backend(self.backend, self.device, self.dtype)
        self.make_rule()
        if self.rule == "seed" and self.normalise:
            raise InputError("the seed rule is kept as the seed wrote it: it cannot --normalise")
        if self.reference is None:
            self.reference = "narrow" if self.backend == "onnxruntime" else "matched"
        if self.reference not in REFERENCES:
            raise InputError(
                f"unknown reference {self.reference!r}; expected one of: {', '.join(REFERENCES)}"
            )
        if self.normalise is None:
            self.normalise = self.rule != "seed"
        if self.max_load is None:  # (the guard judges a normalised label's load only)
            self.max_load = AUTO_MAX_LOAD.get(self.backend, 0.0) if self.normalise else 0.0
        ok = isinstance(self.max_load, int | float) and not isinstance(self.max_load, bool)
        if not ok or not (self.max_load == 0 or 1.0 <= self.max_load <= 100.0):
            raise InputError(
                f"max_load (--max-load) must be 0 (off) or a slowdown from 1 to 100 (1.15: "
                f"15 % slower than at calibration), got {self.max_load!r}"
            )
        self.max_load = float(self.max_load)
        if not self.normalise:
            self.reference = "single"  # no reference block is timed at all

    def make_rule(self) -> SeedRule | CIRule:
        try:
            return make_rule(self.rule, **self.rule_params)
        except TypeError as e:
            raise InputError(f"bad parameters for rule {self.rule!r}: {e}") from None

    def rule_settings(self) -> dict:
        """Every parameter of the rule as it will run, defaults included. A dataset stores
        these, so a later LENNA whose defaults differ cannot continue a file under other
        settings without saying so (``rule_params`` alone holds only what was asked for)."""
        rule = self.make_rule()
        # not ``name``: the rule's name is ``rule``, and rule_params cannot hold it
        return {f.name: getattr(rule, f.name) for f in fields(rule) if f.name != "name"}

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return asdict(self)
