"""Expected latency of one block under α on this machine: ``measure_block``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from lenna.measure.config import MeasureConfig
from lenna.measure.load_guard import guarded
from lenna.measure.ort_bench import gated_bench
from lenna.measure.reference import Calibration, normalisation
from lenna.measure.rules import Estimate
from lenna.measure.sampler import SampleSpec
from lenna.measure.threads import torch_threads
from lenna.measure.timer import Timer
from lenna.space import Block, SearchSpace, get_space
from lenna.space.encode import probabilities


@dataclass
class Measurement:
    """A label with its provenance; ``alphas`` are exactly the logits the gates sampled from."""

    block_type: str
    channels: int
    resolution: int
    alphas: np.ndarray
    estimate: Estimate
    wall_s: float

    @property
    def latency_ms(self) -> float:
        return self.estimate.latency_ms


def measure_block(
    space: SearchSpace | str,
    block_type: str,
    channels: int,
    resolution: int,
    alphas: object,
    config: MeasureConfig | None = None,
    seed: int = 0,
    calibration: Calibration | None = None,
) -> Measurement:
    """Build the gated block, warm it up and estimate its expected latency under ``alphas``
    (``space``: a :class:`SearchSpace` or its name).

    With ``config.normalise``, the label is at the speed of ``calibration`` (a dataset's:
    ``Calibration.of(meta)``; ``None`` calibrates once per process)."""
    config = config or MeasureConfig()
    with torch_threads(config.threads):
        return _measure(
            space,
            block_type,
            channels,
            resolution,
            alphas,
            config,
            seed,
            calibration,
        )


def _measure(
    space: SearchSpace | str,
    block_type: str,
    channels: int,
    resolution: int,
    alphas: object,
    config: MeasureConfig,
    seed: int,
    calibration: Calibration | None,
) -> Measurement:
    t0 = time.perf_counter()
    space = get_space(space) if isinstance(space, str) else space
    space.check(block_type, channels, resolution)
    alphas = space.check_alphas(alphas)
    torch.manual_seed(seed)
    device = torch.device(config.device)
    block = Block(space, block_type, channels, "gated", alphas).to(device, config.torch_dtype)
    # the gates sample from exactly the stored α, not a copy rounded to a half-precision dtype
    block.alphas.data = torch.as_tensor(alphas, dtype=torch.float64, device=device)
    shape = (config.batch, channels, resolution, resolution)
    inputs = tuple(
        torch.randn(shape, device=device, dtype=config.torch_dtype) for _ in range(space.num_inputs)
    )
    generator = torch.Generator().manual_seed(seed)
    reference, reference_ms = normalisation(space, config, calibration, (channels, resolution))
    bench = gated_bench(config, block, inputs, Timer(device), generator, reference)
    bench.warm_up(config.warmup_passes)
    rule = config.make_rule()
    costs = probs = None
    if getattr(rule, "control", False):
        probs = probabilities(space, block_type, alphas)
        if np.all(probs.max(axis=1) == 1.0):  # one path only: nothing for a control to explain
            costs = np.where(space.op_mask(block_type), 0.0, np.nan)
        else:
            costs = bench.op_costs(config.op_passes)
    estimate = guarded(lambda: rule.run(bench, costs, probs, reference_ms), config.max_load)
    return Measurement(block_type, channels, resolution, alphas, estimate, time.perf_counter() - t0)


def measure_spec(
    space: SearchSpace,
    spec: SampleSpec,
    config: MeasureConfig | None = None,
    seed: int = 0,
    calibration: Calibration | None = None,
) -> Measurement:
    """:func:`measure_block` of one sampler draw (its block type, channels, resolution, α)."""
    return measure_block(
        space,
        spec.block_type,
        spec.channels,
        spec.resolution,
        spec.alphas,
        config,
        seed=seed,
        calibration=calibration,
    )
