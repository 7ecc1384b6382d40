"""The first-order search step as one CUDA graph, captured at the start of an epoch and
replayed for each of its batches.

Why: at DARTS's size (8 cells, 14 edges of 7 ops) a step dispatches ~28,000 small kernels.
Eager PyTorch spends longer launching them than an H200 spends running them (0.56–0.90 s a
step, 3–5 h for a 50-epoch search). A graph replays all of a step's kernels in one launch.

What stays outside the graph, eager:

- the batch's crop and flip (its result is copied into the graph's fixed input buffers);
- the latency term (a few hundred ops at most, against the step's ~28,000; a predictor of
  another kind could hold ops no graph can): its value and α-gradient are copied into fixed
  buffers and the graph applies the chain rule, as
  :func:`lenna.search.bilevel.alpha_update` does eagerly. A budget's multiplier μ, which
  changes every step, is a fixed buffer too;
- reading the step's statistics back: one read for the step's six numbers.

A graph bakes in the SGD learning rate, so it is captured again each epoch (the scheduler
changes the rate between epochs). The first steps of an epoch run eagerly — three before the
first capture of each kind of step (with and without the α step) in this process, one before
each later capture — and are real steps: a graphed search takes the same steps as an eager
one. Adam must be ``capturable`` (its step count lives on the device). Where a graph cannot
hold the step — the CPU, gated mode (a new path each step), second order — the search runs
eagerly. If capture fails, the search warns once and goes on eagerly; that is exact because
nothing a failed capture recorded ran, and both updates begin by setting the gradients they
use to None. (A capture that records nothing, its work having gone to another stream, did
run that work once: its result is the step.)
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from lenna.search.bilevel import StepStats, alpha_update, forward_logits, latency_grad, w_update
from lenna.search.latency import LatencyTerm
from lenna.search.network import Network
from lenna.search.replay import FIRST_EAGER, Inputs, Replayed
from lenna.search.replay import LATER_EAGER as LATER_EAGER  # the search's, too


def graph_applies(device: torch.device, mode: str, unrolled: bool) -> bool:
    """Whether a CUDA graph can hold this search's step (see the module's docstring)."""
    return device.type == "cuda" and mode == "weighted" and not unrolled


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


class GraphedStep(Replayed):
    """One epoch's search step: ``step(batch_w, batch_a)`` → :class:`StepStats`.

    ``capture`` False runs the same body eagerly, step by step (what the CPU tests check
    against :func:`lenna.search.bilevel.search_step`).
    """

    what = "the search step"

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
        super().__init__(next(net.parameters()).device, capture, eager_steps)
        self.net, self.term, self.w_opt, self.a_opt = net, term, w_opt, a_opt
        self.grad_clip, self.arch, self.amp = grad_clip, arch, amp
        self.budget = term is not None and term.budget_ms is not None

    def __call__(
        self, batch_w: tuple[torch.Tensor, torch.Tensor], batch_a: tuple[torch.Tensor, torch.Tensor]
    ) -> StepStats:
        t0 = time.perf_counter()
        inputs, lat_s = self._inputs(batch_w, batch_a)
        v = self.run(inputs).tolist()  # the step's one read-back
        return StepStats(
            w_loss=v[0],
            w_correct=int(v[1]),
            a_loss=v[2],
            a_correct=int(v[3]),
            total_loss=v[4],
            expected_ms=v[5],
            latency_s=lat_s,
            step_s=time.perf_counter() - t0,
            batch=len(batch_w[1]),
        )

    def _inputs(
        self, batch_w: tuple[torch.Tensor, torch.Tensor], batch_a: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[Inputs, float]:
        """The step's tensors: the batches, E and dE/dα (the latency term, eager), μ."""
        alphas = dict(self.net.alphas.items())
        if self.arch:
            e, e_grads, lat_s = latency_grad(self.term, alphas, always=self.budget)
        else:
            with torch.no_grad():
                e = self.term.expected_ms(alphas) if self.term is not None else None
            e_grads, lat_s = {}, 0.0
        inputs: Inputs = {"xw": batch_w[0], "yw": batch_w[1], "xa": batch_a[0], "ya": batch_a[1]}
        inputs["e"] = e
        inputs.update({f"de.{k}": v for k, v in e_grads.items()})
        if self.budget and self.arch:  # a fill, not a copy from the host
            inputs["mu"] = torch.full(
                (), self.term.multiplier, dtype=torch.float32, device=self.device
            )  # the loss's dtype: μ·(…) as eager's Python float gives it
        return inputs, lat_s

    def _body(self, inp: Inputs) -> torch.Tensor:
        """The step from the tensors of ``inp``; its statistics as one float64 vector."""
        net, e = self.net, inp["e"]
        batch_a = (inp["xa"], inp["ya"])
        if self.arch:
            e_grads = {k[3:]: v for k, v in inp.items() if k.startswith("de.")}
            mu = inp.get("mu")
            loss, ce, logits = alpha_update(
                net, self.term, self.a_opt, batch_a, e, e_grads, self.amp, mu
            )
        else:
            with torch.no_grad():
                logits = forward_logits(net, batch_a[0], self.amp)
                loss = ce = F.cross_entropy(logits, batch_a[1])
        a_correct = (logits.argmax(1) == batch_a[1]).sum()
        batch_w = (inp["xw"], inp["yw"])
        w_loss, w_logits = w_update(net, self.w_opt, batch_w, self.grad_clip, self.amp)
        w_correct = (w_logits.argmax(1) == inp["yw"]).sum()
        nan = torch.full((), float("nan"), device=w_loss.device)
        parts = (w_loss, w_correct, ce, a_correct, loss, nan if e is None else e)
        return torch.stack([p.detach().to(w_loss.device, torch.float64) for p in parts])
