"""The gated bench under ONNX Runtime: every reset times the sampled path as ORT runs the fixed
cell (:mod:`lenna.measure.ort_path`), and each op's cost (the control variate) is the op alone in
its own ORT session. Gate sampling, the reference pairing and the stopping rules are the torch
bench's, so a label means the same thing under either runtime."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lenna.measure.backend import DISCARD_PASSES
from lenna.measure.bench import GatedBench
from lenna.measure.config import MeasureConfig
from lenna.measure.ort_path import PathSessions
from lenna.measure.reference import Reference
from lenna.measure.timer import Timer
from lenna.space import Block


class OrtGatedBench(GatedBench):
    """:class:`GatedBench` whose passes run in ONNX Runtime with ``threads`` intra-op threads;
    ``discard`` untimed passes follow every reset (a new session's first passes run slow)."""

    def __init__(
        self,
        block: Block,
        inputs: tuple[torch.Tensor, ...],
        timer: Timer,
        generator: torch.Generator,
        reference: Reference | None = None,
        threads: int = 1,
        discard: int = DISCARD_PASSES["onnxruntime"],
    ) -> None:
        super().__init__(block, inputs, timer, generator, reference)
        self.discard = discard
        self.sessions = PathSessions(block, inputs, threads, edge_inputs=self._edge_inputs)

    def reset(self) -> list[int]:
        """Sample a new path, open its session, run ``discard`` passes untimed."""
        self.path = self.block.reset_gates(self.generator)
        self.sessions.open()
        self._run = self.sessions.run  # type: ignore[method-assign]  (the session's own call)
        for _ in range(self.discard):
            self._run()
        return self.path

    def warm_up(self, passes: int = 1) -> None:
        """Export every candidate op once (no export between a reset and its passes)."""
        self.sessions.export_all()

    def _op_call(self, op: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
        call = self.sessions.op_call(op, x)
        for _ in range(self.discard - 1):  # time_ops runs one more untimed call itself
            call()
        return call


def gated_bench(
    config: MeasureConfig,
    block: Block,
    inputs: tuple[torch.Tensor, ...],
    timer: Timer,
    generator: torch.Generator,
    reference: Reference | None = None,
) -> GatedBench:
    """The gated bench of ``config``'s backend."""
    if config.backend == "onnxruntime":
        return OrtGatedBench(block, inputs, timer, generator, reference, config.threads or 1)
    return GatedBench(block, inputs, timer, generator, reference)
