"""One step of DARTS's bilevel optimisation, with the latency term in the α loss.

α step on the α half, then w step on the w half. First order by default: ∇α of the α loss at
the current w. ``unrolled`` (second order, Liu et al. 2019, eq. 7–8): ∇α at
w' = w − ξ∇w L_w(w, α), minus ξ times a finite-difference Hessian-vector product.

The latency term depends on α only, so its gradient is computed once, separately, and added
by the chain rule: that makes its cost measurable (``latency_s``) and exact for both forms.

Approximations, as in common practice: the unrolled virtual step is plain SGD (no momentum or
weight decay); in ``gated`` mode α's gradient is the straight-through estimate of the sampled
path only (see ``lenna.space.mixed``), cheaper and noisier than ProxylessNAS's two-path one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lenna.search.latency import LatencyTerm
from lenna.search.network import Network


@dataclass
class StepStats:
    w_loss: float
    w_correct: int
    a_loss: float  # cross-entropy on the α batch
    a_correct: int
    total_loss: float  # the α loss with the latency term
    expected_ms: float
    latency_s: float  # time of the latency term (forward + gradient)
    step_s: float
    batch: int = 0
    epoch: int = 0  # 1-based, set by the run loop


def forward_logits(net: Network, x: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """Logits in float32; with ``amp``, the network runs under autocast in that dtype (α's
    softmax, the latency term and the loss stay in float32/float64)."""
    if amp is None:
        return net(x)
    with torch.autocast(x.device.type, dtype=amp):
        return net(x).float()


def latency_grad(
    term: LatencyTerm | None, alphas: dict[str, nn.Parameter], always: bool = False
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], float]:
    """E[latency] and dE/dα (one predictor pass), and the seconds it took. ``always``: the
    gradient even while the term does not move α (a budget's μ = 0), for a CUDA graph whose
    shape cannot change from step to step."""
    if term is None:
        return None, {}, 0.0
    t0 = time.perf_counter()
    if not (term.active or always):  # reported, not optimised: no gradient needed
        with torch.no_grad():
            return term.expected_ms(dict(alphas)), {}, time.perf_counter() - t0
    leaves = {k: a.detach().clone().requires_grad_(True) for k, a in alphas.items()}
    e = term.expected_ms(leaves)
    grads = dict(zip(leaves, torch.autograd.grad(e, list(leaves.values())), strict=True))
    return e.detach(), grads, time.perf_counter() - t0


def _alpha_loss(
    net: Network,
    term: LatencyTerm | None,
    x: torch.Tensor,
    y: torch.Tensor,
    e: torch.Tensor | None,
    amp: torch.dtype | None = None,
    mu: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(α loss, CE, E as a leaf whose .grad becomes dLoss/dE, logits). ``mu``: a budget's
    multiplier as a tensor, read when the loss runs (a CUDA graph's replay), not when it was
    built; with it the term is in the loss even at μ = 0, where it adds exactly 0."""
    logits = forward_logits(net, x, amp)
    ce = F.cross_entropy(logits, y)
    if term is None or e is None or (mu is None and not term.active):
        return ce, ce, None, logits
    e_leaf = e.clone().requires_grad_(True)
    return term.loss(ce, e_leaf, mu), ce, e_leaf, logits


def search_step(
    net: Network,
    term: LatencyTerm | None,
    w_opt: torch.optim.Optimizer,
    a_opt: torch.optim.Optimizer,
    batch_w: tuple[torch.Tensor, torch.Tensor],
    batch_a: tuple[torch.Tensor, torch.Tensor],
    grad_clip: float,
    unrolled: bool = False,
    generator: torch.Generator | None = None,
    arch: bool = True,
    amp: torch.dtype | None = None,
) -> StepStats:
    """α step (unless ``arch`` is off: weight warm-up) then w step; returns what the progress
    bar and metrics need."""
    t0 = time.perf_counter()
    alphas = dict(net.alphas.items())
    weights = net.weights()
    if net.mode == "gated":
        net.reset_gates(generator)
    if not arch:
        with torch.no_grad():
            e = term.expected_ms(alphas) if term is not None else None
            logits = forward_logits(net, batch_a[0], amp)
            loss = ce = F.cross_entropy(logits, batch_a[1])
        return _w_step(
            net, w_opt, batch_w, batch_a, grad_clip, generator, t0, loss, ce, logits, e, 0.0, amp
        )
    # ---- α step ----------------------------------------------------------------------
    e, e_grads, lat_s = latency_grad(term, alphas)
    if unrolled:
        a_opt.zero_grad(set_to_none=True)
        loss, ce, e_leaf, logits = _unrolled_alpha_grads(
            net, term, w_opt, batch_w, batch_a, e, weights, amp
        )
        if e_leaf is not None:
            for k, a in alphas.items():
                a.grad = a.grad + e_leaf.grad * e_grads[k]
        a_opt.step()
    else:
        loss, ce, logits = alpha_update(net, term, a_opt, batch_a, e, e_grads, amp)
    return _w_step(
        net, w_opt, batch_w, batch_a, grad_clip, generator, t0, loss, ce, logits, e, lat_s, amp
    )


def alpha_update(
    net: Network,
    term: LatencyTerm | None,
    a_opt: torch.optim.Optimizer,
    batch_a: tuple[torch.Tensor, torch.Tensor],
    e: torch.Tensor | None,
    e_grads: dict[str, torch.Tensor],
    amp: torch.dtype | None = None,
    mu: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-order α step at the current w, given E and dE/dα: (α loss, CE, logits). Nothing
    here reads a value back to the host, so a CUDA graph can hold it
    (:mod:`lenna.search.graphed`)."""
    alphas = dict(net.alphas.items())
    a_opt.zero_grad(set_to_none=True)
    loss, ce, e_leaf, logits = _alpha_loss(net, term, *batch_a, e, amp, mu)
    extra = [e_leaf] if e_leaf is not None else []
    grads = torch.autograd.grad(loss, list(alphas.values()) + extra)
    for (k, a), g in zip(alphas.items(), grads[: len(alphas)], strict=True):
        # the latency term by the chain rule: dLoss/dE · dE/dα
        a.grad = g if e_leaf is None else g + grads[-1] * e_grads[k]
    a_opt.step()
    return loss, ce, logits


def w_update(
    net: Network,
    w_opt: torch.optim.Optimizer,
    batch_w: tuple[torch.Tensor, torch.Tensor],
    grad_clip: float,
    amp: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight step on the w half: (loss, logits). No read-back either."""
    alphas = list(net.alphas.values())
    for a in alphas:
        a.requires_grad_(False)  # the w step needs no α gradient
    try:
        w_opt.zero_grad(set_to_none=True)
        w_logits = forward_logits(net, batch_w[0], amp)
        w_loss = F.cross_entropy(w_logits, batch_w[1])
        w_loss.backward()
        nn.utils.clip_grad_norm_(net.weights(), grad_clip)
        w_opt.step()
    finally:
        for a in alphas:
            a.requires_grad_(True)
    return w_loss, w_logits


def _w_step(
    net: Network,
    w_opt: torch.optim.Optimizer,
    batch_w: tuple[torch.Tensor, torch.Tensor],
    batch_a: tuple[torch.Tensor, torch.Tensor],
    grad_clip: float,
    generator: torch.Generator | None,
    t0: float,
    loss: torch.Tensor,
    ce: torch.Tensor,
    logits: torch.Tensor,
    e: torch.Tensor | None,
    lat_s: float,
    amp: torch.dtype | None = None,
) -> StepStats:
    """The weight step on the w half, and the step's statistics, read back at once (one wait
    for the GPU per step, at its end)."""
    a_correct = (logits.argmax(1) == batch_a[1]).sum()
    if net.mode == "gated":
        net.reset_gates(generator)
    w_loss, w_logits = w_update(net, w_opt, batch_w, grad_clip, amp)
    w_correct = (w_logits.argmax(1) == batch_w[1]).sum()
    parts = (w_loss, w_correct, ce, a_correct, loss)
    v = torch.stack([p.detach().to(w_loss.device, torch.float64) for p in parts]).tolist()
    return StepStats(
        w_loss=v[0],
        w_correct=int(v[1]),
        a_loss=v[2],
        a_correct=int(v[3]),
        total_loss=v[4],
        expected_ms=float(e) if e is not None else float("nan"),
        latency_s=lat_s,
        step_s=time.perf_counter() - t0,
        batch=len(batch_w[1]),
    )


def _unrolled_alpha_grads(
    net: Network,
    term: LatencyTerm | None,
    w_opt: torch.optim.Optimizer,
    batch_w: tuple[torch.Tensor, torch.Tensor],
    batch_a: tuple[torch.Tensor, torch.Tensor],
    e: torch.Tensor | None,
    weights: list[nn.Parameter],
    amp: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Second-order DARTS: sets α.grad (CE part) and returns the α loss pieces."""
    alphas = list(net.alphas.values())
    xi = w_opt.param_groups[0]["lr"]
    backup = [w.detach().clone() for w in weights]
    # virtual step w' = w − ξ ∇w L_w(w, α)
    g_w = _grad(F.cross_entropy(forward_logits(net, batch_w[0], amp), batch_w[1]), weights)
    with torch.no_grad():
        for w, g in zip(weights, g_w, strict=True):
            w.sub_(xi * g)
    loss, ce, e_leaf, logits = _alpha_loss(net, term, *batch_a, e, amp)
    extra = [e_leaf] if e_leaf is not None else []
    grads = _grad(loss, alphas + weights + extra)
    d_alpha = grads[: len(alphas)]
    d_w = grads[len(alphas) : len(alphas) + len(weights)]
    if e_leaf is not None:
        e_leaf.grad = grads[-1]
    # finite-difference Hessian-vector product around the original w
    eps = 0.01 / (torch.sqrt(sum((g * g).sum() for g in d_w)) + 1e-12)
    hv = []
    for sign in (1.0, -1.0):  # w⁺ = w + ε∇w'L_α, then w⁻ = w − ε∇w'L_α
        with torch.no_grad():
            for w, b, g in zip(weights, backup, d_w, strict=True):
                w.copy_(b + sign * eps * g)
        loss_w = F.cross_entropy(forward_logits(net, batch_w[0], amp), batch_w[1])
        hv.append(_grad(loss_w, alphas))
    with torch.no_grad():
        for w, b in zip(weights, backup, strict=True):
            w.copy_(b)
    for a, da, hp, hm in zip(alphas, d_alpha, hv[0], hv[1], strict=True):
        a.grad = da - xi * (hp - hm) / (2 * eps)
    return loss, ce, e_leaf, logits


def _grad(loss: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Gradients with zeros for inputs the graph did not use (gated mode: unsampled ops)."""
    gs = torch.autograd.grad(loss, inputs, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gs, strict=True))
