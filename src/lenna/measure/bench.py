"""A block on a device, ready to be timed under binary gates.

The stopping rules talk to this small protocol (``reset``, ``passes``), so they
can be tested against a fake with known values. The real bench:

- runs under ``torch.inference_mode()`` with the block in eval mode (BN uses running stats);
- warms up every candidate op once before any timing (first calls build kernels/primitives);
- discards the first pass after every gate reset (the new path's first call is an outlier);
- optionally times a fixed :class:`~lenna.measure.reference.Reference` block pass by pass
  alongside the path (``paired``), so the rule can divide the machine's drift out;
- can time each candidate op alone at the block's own shapes (``op_costs``), which gives the
  control variate of the default rule: the sampled path's sum of op costs, whose expectation
  under softmax(α) is known exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lenna.measure.backend import DISCARD_PASSES
from lenna.measure.probe import probe_edge_inputs
from lenna.measure.reference import Reference, time_paired
from lenna.measure.timer import Timer
from lenna.space import Block
from lenna.space.mixed import NONE_OP


class GatedBench:
    """Times a gated ``block`` on ``inputs``; gate sampling uses ``generator``."""

    def __init__(
        self,
        block: Block,
        inputs: tuple[torch.Tensor, ...],
        timer: Timer,
        generator: torch.Generator,
        reference: Reference | None = None,
    ) -> None:
        self.block, self.inputs, self.timer, self.generator = block.eval(), inputs, timer, generator
        self.reference = reference
        self.path: list[int] = []
        self._edge_inputs = probe_edge_inputs(self.block, inputs)

    def _run(self) -> None:
        self.block(*self.inputs)

    @torch.inference_mode()
    def reset(self) -> list[int]:
        """Sample a new path, run it once untimed (the outlier pass), return the path."""
        self.path = self.block.reset_gates(self.generator)
        for _ in range(DISCARD_PASSES["torch"]):
            self._run()
        return self.path

    @torch.inference_mode()
    def passes(self, n: int) -> np.ndarray:
        """Seconds of ``n`` timed passes of the current path."""
        return np.array([self.timer(self._run) for _ in range(n)])

    @torch.inference_mode()
    def paired(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Seconds of ``n`` passes of the path and of the reference, interleaved pass by pass
        so both see the same moments of the machine."""
        return time_paired(self.timer, self._run, self.reference, n)

    def edge_kinds(self) -> dict[tuple, int]:
        """One representative edge per (ops, stride, input shape): such edges cost alike."""
        kinds: dict[tuple, int] = {}
        for k in self.block.edges:
            kinds.setdefault(self._kind(int(k)), int(k))
        return kinds

    def _kind(self, k: int) -> tuple:
        edge = self.block.edges[str(k)]
        return (edge.op_names, edge.stride, tuple(self._edge_inputs[k].shape))

    @torch.inference_mode()
    def warm_up(self, passes: int = 1) -> None:
        """Run every candidate op of every edge kind ``passes`` times (builds kernels/caches)."""
        for k in self.edge_kinds().values():
            x = self._edge_inputs[k]
            for op in self.block.edges[str(k)].ops:
                for _ in range(passes):
                    op(x)

    @torch.inference_mode()
    def time_ops(self, passes: int, z0_ms: float | None = None) -> list[dict]:
        """Each op of each edge kind alone: ``passes`` timed calls after one untimed call.

        With ``z0_ms`` (and a reference), the reference is timed after each call and the op's
        times are scaled by ``Z0 / median(reference)``: at the calibrated speed, like labels."""
        out = []
        b = self.block
        c_out = b.space.shapes(b.block_type, b.channels, 2)["edge_channels"]
        for key, k in self.edge_kinds().items():
            x, edge = self._edge_inputs[k], self.block.edges[str(k)]
            for slot, (name, op) in enumerate(zip(edge.op_names, edge.ops, strict=True)):
                if name == NONE_OP:  # an absent edge costs nothing: the path never calls it
                    out.append(self._op_row(key, slot, name, edge, x, c_out, [0.0] * passes))
                    continue
                call = self._op_call(op, x)
                call()
                times, refs = [], []
                for _ in range(passes):
                    times.append(self.timer(call))
                    if z0_ms is not None and self.reference is not None:
                        refs.append(self.reference.time_s())
                if refs:
                    times = [t * z0_ms * 1e-3 / float(np.median(refs)) for t in times]
                out.append(self._op_row(key, slot, name, edge, x, c_out, times))
        return out

    def _op_call(self, op: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
        """One call of ``op`` alone on ``x``, as this bench's runtime runs it."""
        return lambda: op(x)

    @staticmethod
    def _op_row(
        key: tuple, slot: int, name: str, edge: object, x: torch.Tensor, c_out: int, times: list
    ) -> dict:
        return {
            "kind": key,
            "slot": slot,
            "op": name,
            "stride": edge.stride,  # type: ignore[attr-defined]
            "c_in": int(x.shape[1]),
            "c_out": c_out,
            "times": times,
        }

    def op_costs(self, passes: int = 5) -> np.ndarray:
        """Median seconds of each op alone, per edge: ``(num_edges, max_ops)``, NaN where none."""
        costs = np.full(self.block.space.alpha_shape, np.nan)
        for t in self.time_ops(passes):
            for j in self.block.edges:
                if self._kind(int(j)) == t["kind"]:
                    costs[int(j), t["slot"]] = float(np.median(t["times"]))
        return costs
