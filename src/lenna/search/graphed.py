"""The first-order search step as one CUDA graph, captured at the start of an epoch and
replayed for each of its batches.

Why: at DARTS's size (8 cells, 14 edges of 7 ops) a step dispatches ~28,000 small kernels.
Eager PyTorch spends longer launching them than an H200 spends running them (0.56–0.90 s a
step, 3–5 h for a 50-epoch search). A graph replays all of a step's kernels in one launch.

What stays outside the graph, eager:

- the batch's crop and flip (its result is copied into the graph's fixed input buffers);
- the latency term: a predictor may index its table on the CPU (``lut``), which no graph can
  hold; its value and α-gradient are copied into fixed buffers and the graph applies the
  chain rule, as :func:`lenna.search.bilevel.alpha_update` does eagerly;
- reading the step's statistics back: one synchronisation per step, not six.

A graph bakes in the SGD learning rate, so it is captured again each epoch (the scheduler
changes the rate between epochs). The first steps of an epoch run eagerly, the first of the
search warming up what capture must not allocate, and are real steps: a graphed search takes
the same steps as an eager one. Adam must be ``capturable`` (its step count lives on the
device). Where a graph cannot hold the step — the CPU, gated mode (a new path each step),
second order, a latency budget (its multiplier changes each step) — the search runs eagerly.
If capture fails, the search warns once and goes on eagerly.
"""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F

from lenna.search.bilevel import StepStats, _forward, _latency_grad, alpha_update, w_update
from lenna.search.latency import LatencyTerm
from lenna.search.network import Network

FIRST_EAGER = 3  # eager steps before the search's first capture (cuBLAS/cuDNN set-up, Adam state)
LATER_EAGER = 1  # before each later epoch's capture
STATS = ("w_loss", "w_correct", "a_loss", "a_correct", "total_loss", "expected_ms")


def graph_applies(device: torch.device, mode: str, unrolled: bool, budget: bool) -> bool:
    """Whether a CUDA graph can hold this search's step (see the module's docstring)."""
    return device.type == "cuda" and mode == "weighted" and not unrolled and not budget


def set_capturable(opt: torch.optim.Optimizer, on: bool) -> None:
    """Adam's ``capturable`` flag, with its step counts where that flag wants them (on the
    parameters' device, or the CPU). A loaded checkpoint carries the flag it was saved with."""
    for group in opt.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = on
        for p in group["params"]:
            st = opt.state.get(p, {})
            if isinstance(st.get("step"), torch.Tensor):
                st["step"] = st["step"].to(p.device if on else "cpu", torch.float32)


class GraphedStep:
    """One epoch's search step: ``step(batch_w, batch_a)`` → :class:`StepStats`.

    ``capture`` False runs the same body eagerly, step by step (what the CPU tests check
    against :func:`lenna.search.bilevel.search_step`).
    """

    def __init__(
        self,
        net: Network,
        term: LatencyTerm | None,
        w_opt: torch.optim.Optimizer,
        a_opt: torch.optim.Optimizer,
        grad_clip: float,
        arch: bool = True,
        amp: torch.dtype | None = None,
        capture: bool = True,
        eager_steps: int = FIRST_EAGER,
    ) -> None:
        self.net, self.term, self.w_opt, self.a_opt = net, term, w_opt, a_opt
        self.grad_clip, self.arch, self.amp = grad_clip, arch, amp
        self.capture, self.eager_left = capture, eager_steps
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict | None = None
        self.stats: torch.Tensor | None = None
        self.captured = False  # whether this epoch's steps replay a graph

    def __call__(
        self, batch_w: tuple[torch.Tensor, torch.Tensor], batch_a: tuple[torch.Tensor, torch.Tensor]
    ) -> StepStats:
        t0 = time.perf_counter()
        alphas = dict(self.net.alphas.items())
        if self.arch:
            e, e_grads, lat_s = _latency_grad(self.term, alphas)
        else:
            with torch.no_grad():
                e = self.term.expected_ms(alphas) if self.term is not None else None
            e_grads, lat_s = {}, 0.0
        inputs = {"xw": batch_w[0], "yw": batch_w[1], "xa": batch_a[0], "ya": batch_a[1],
                  "e": e, **{f"de.{k}": v for k, v in e_grads.items()}}  # fmt: skip
        if self.graph is not None:
            for k, v in inputs.items():
                if v is not None:
                    self.static[k].copy_(v)
            self.graph.replay()
            stats = self.stats
        elif self.capture and self.eager_left <= 0:
            stats = self._capture(inputs)
        else:
            self.eager_left -= 1
            stats = self._eager(inputs)
        values = stats.tolist()  # the step's one read-back
        st = StepStats(**dict(zip(STATS, values, strict=True)), latency_s=lat_s, step_s=0.0,
                       batch=len(batch_w[1]))  # fmt: skip
        st.w_correct, st.a_correct = int(st.w_correct), int(st.a_correct)
        st.step_s = time.perf_counter() - t0
        return st

    def _body(self, inp: dict) -> torch.Tensor:
        """The step from the tensors of ``inp``; its statistics as one float64 vector."""
        net, e = self.net, inp["e"]
        batch_a = (inp["xa"], inp["ya"])
        if self.arch:
            e_grads = {k[3:]: v for k, v in inp.items() if k.startswith("de.")}
            loss, ce, logits = alpha_update(
                net, self.term, self.a_opt, batch_a, e, e_grads, self.amp
            )
        else:
            with torch.no_grad():
                logits = _forward(net, batch_a[0], self.amp)
                loss = ce = F.cross_entropy(logits, batch_a[1])
        a_correct = (logits.argmax(1) == batch_a[1]).sum()
        w_loss, w_logits = w_update(net, self.w_opt, (inp["xw"], inp["yw"]), self.grad_clip,
                                    self.amp)  # fmt: skip
        w_correct = (w_logits.argmax(1) == inp["yw"]).sum()
        nan = torch.full((), float("nan"), device=w_loss.device)
        parts = (w_loss, w_correct, ce, a_correct, loss, nan if e is None else e)
        return torch.stack([p.detach().to(w_loss.device, torch.float64) for p in parts])

    def _eager(self, inp: dict) -> torch.Tensor:
        if not self.capture:
            return self._body(inp)
        side = torch.cuda.Stream()  # warm-up as capture wants it: off the default stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            stats = self._body(inp)
        torch.cuda.current_stream().wait_stream(side)
        return stats

    def _capture(self, inp: dict) -> torch.Tensor:
        """Capture the step on this batch's tensors (copied into fixed buffers), then replay
        it once: that replay is this step."""
        static = {k: (v.clone() if v is not None else None) for k, v in inp.items()}
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                stats = self._body(static)
        except RuntimeError as exc:
            self.capture = False  # nothing ran: the step is taken eagerly below
            torch.cuda.synchronize()
            warnings.warn(
                f"the search step could not be captured as a CUDA graph "
                f"({str(exc).splitlines()[0]}); it runs eagerly (slower, same result)",
                stacklevel=3,
            )
            return self._body(inp)
        self.graph, self.static, self.stats, self.captured = graph, static, stats, True
        graph.replay()
        return stats
