"""Latency of a fixed module (a derived network or one of its cells), with the datasets' timer.

There are no gates to sample, so a "reset" is a round: one untimed pass, then a few timed
passes whose minimum is the round's value; rounds continue until the 95 % confidence interval
of their mean is within the rule's tolerance. Same clock, warm-up, threads, eval mode and
reference normalisation as :func:`lenna.measure.measure_block`; under ONNX Runtime the module
is exported once and its session timed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lenna.measure.backend import DISCARD_PASSES
from lenna.measure.config import MeasureConfig
from lenna.measure.load_guard import guarded
from lenna.measure.ort_path import module_call
from lenna.measure.reference import Calibration, Reference, normalisation, time_paired
from lenna.measure.rules import Estimate, make_rule
from lenna.measure.threads import torch_threads
from lenna.measure.timer import Timer
from lenna.space import SearchSpace


class FixedBench:
    """The :class:`~lenna.measure.bench.Bench` protocol for a module without gates."""

    def __init__(
        self,
        module: nn.Module,
        inputs: tuple[torch.Tensor, ...],
        timer: Timer,
        reference: Reference | None = None,
        run: Callable[[], object] | None = None,
    ) -> None:
        self.module, self.inputs, self.timer = module.eval(), inputs, timer
        self.reference = reference
        if run is not None:  # another runtime's pass of the same module (ONNX Runtime)
            self._run = run  # type: ignore[method-assign]

    def _run(self) -> None:
        self.module(*self.inputs)

    @torch.inference_mode()
    def reset(self) -> list[int]:
        self._run()  # untimed: the round's first pass
        return []

    @torch.inference_mode()
    def passes(self, n: int) -> np.ndarray:
        return np.array([self.timer(self._run) for _ in range(n)])

    @torch.inference_mode()
    def paired(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` passes of the module and of the reference, interleaved."""
        return time_paired(self.timer, self._run, self.reference, n)


# what a plain-CI measurement takes from a cv or ci config (not the control or its rejection)
CI_SETTINGS = ("passes", "q", "rel", "confidence", "min_resets", "max_resets")


def measure_module(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    config: MeasureConfig | None = None,
    space: SearchSpace | None = None,
    calibration: Calibration | None = None,
    size: tuple[int, int] | None = None,
) -> Estimate:
    """Latency (ms) of ``module(*inputs)`` under ``config`` (rule ``ci``: no gates, no control).

    With ``config.normalise`` and a ``space`` (whose reference block to time alongside): at
    the speed of ``calibration`` (``None``: calibrated once per process). ``size``: the
    (channels, resolution) of a block of ``space``, so it is timed beside the anchor its
    label would be (a matched ``config.reference``); ``None``: beside the primary."""
    config = config or MeasureConfig()
    params = config.rule_params if config.rule in ("ci", "cv") else {}
    rule = make_rule("ci", **{k: v for k, v in params.items() if k in CI_SETTINGS})
    with torch_threads(config.threads):  # training afterwards keeps the machine's threads
        device = torch.device(config.device)
        module = copy.deepcopy(module).to(device, config.torch_dtype)  # the caller's stays put
        inputs = tuple(x.to(device, config.torch_dtype) for x in inputs)
        ref, z0 = normalisation(space, config, calibration, size) if space else (None, None)
        run = None
        if config.backend == "onnxruntime":
            run = module_call(module, inputs, config.threads or 1)
        bench = FixedBench(module, inputs, Timer(device), ref, run)
        for _ in range(max(config.warmup_passes, DISCARD_PASSES[config.backend]) + 2):
            bench.reset()
        return guarded(lambda: rule.run(bench, z0_ms=z0), config.max_load)
