"""A step of fixed-shape tensors run eagerly for its first calls, then captured once as a
CUDA graph and replayed: the machinery :mod:`lenna.search.graphed` (the search step) and
:mod:`lenna.search.train_step` (training a derived network) share.

Why: at DARTS's size a step is tens of thousands of small kernels, and eager PyTorch takes
longer to launch them than a large GPU takes to run them; a replay launches them at once.
A subclass gives :meth:`Replayed._body`, a function of a dict of tensors (the same keys and
shapes every call) that returns its statistics as one tensor and reads nothing back to the
host. The eager calls before capture run on a side stream, as capture wants; the capture's
tensors are copies of one call's inputs, into which each later call's inputs are copied
before the replay. If capture fails the step and every later one run eagerly, with one
warning naming the error: exact, because nothing a failed capture recorded ran (a capture
that records nothing, its work having gone to another stream, did run it once: its result is
that step's).
"""

from __future__ import annotations

import warnings

import torch

Inputs = dict[str, torch.Tensor | None]
FIRST_EAGER = (
    3  # eager steps before a kind of step is first captured (cuBLAS/cuDNN, optimiser state)
)
LATER_EAGER = 1  # before each later capture


class Replayed:
    """Eager for ``eager_steps`` calls, then captured and replayed; ``capture`` False: always
    eager (the CPU; what the CPU tests compare)."""

    what = "the step"  # in the warning of a failed capture

    def __init__(self, device: torch.device, capture: bool, eager_steps: int) -> None:
        self.device, self.capture, self.eager_left = device, capture, eager_steps
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: Inputs = {}
        self.stats: torch.Tensor | None = None
        self.captured = False  # whether the calls replay a graph

    def _body(self, inp: Inputs) -> torch.Tensor:
        raise NotImplementedError

    def run(self, inputs: Inputs) -> torch.Tensor:
        """One step on ``inputs``: its statistics (not yet read back)."""
        if self.device.type != "cuda":
            return self._step(inputs)
        with torch.cuda.device(self.device):  # streams and capture on the step's GPU
            return self._step(inputs)

    def _step(self, inputs: Inputs) -> torch.Tensor:
        if self.graph is not None:
            for k, v in inputs.items():
                if v is not None:
                    self.static[k].copy_(v)
            self.graph.replay()
            return self.stats
        if self.capture and self.eager_left <= 0:
            return self._capture(inputs)
        self.eager_left -= 1
        return self._eager(inputs)

    def _eager(self, inp: Inputs) -> torch.Tensor:
        """A step without a graph; before a capture, on a side stream as capture wants it."""
        if not self.capture:
            return self._body(inp)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            stats = self._body(inp)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return stats

    def _capture(self, inp: Inputs) -> torch.Tensor:
        """Capture the step on this batch's tensors (copied into fixed buffers), then replay
        it once: that replay is this step. A failed capture: this step and every later one run
        eagerly."""
        static = {k: (v.clone() if v is not None else None) for k, v in inp.items()}
        graph = torch.cuda.CUDAGraph()
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                with torch.cuda.graph(graph, stream=torch.cuda.Stream(device=self.device)):
                    stats = self._body(static)
        except RuntimeError as exc:
            cause = exc.__context__ or exc
            self._give_up(str(cause).splitlines()[0])
            torch.cuda.synchronize(self.device)
            return self._body(inp)  # nothing the capture recorded ran
        empty = [w for w in seen if "graph is empty" in str(w.message).lower()]
        for w in seen:
            if w not in empty:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if empty:  # the work went to another stream: it ran, once, on this batch's copies
            self._give_up(str(empty[0].message).splitlines()[0])
            return stats
        self.graph, self.static, self.stats, self.captured = graph, static, stats, True
        graph.replay()
        return stats

    def _give_up(self, why: str) -> None:
        self.capture = False
        warnings.warn(
            f"{self.what} could not be captured as a CUDA graph ({why}); it runs eagerly "
            "(slower, same result)",
            stacklevel=6,
        )
