"""Verify a derived architecture: measure it for real, train it from scratch, compare.

Two comparisons: the *cells'* measured latency (each cell timed alone on the input it gets in
the network) against the predictor's sum, which tests the predictor; and the whole network
measured against its prediction (cells plus the measured fixed part), the number a latency
budget is about.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.fixed import measure_module
from lenna.measure.reference import Calibration
from lenna.memory import check_fits
from lenna.search.datasets import ImageData, load_data
from lenna.search.device import compute_device
from lenna.search.genotype import Genotype
from lenna.search.network import Network, network_bytes
from lenna.search.timing import measure_config_from
from lenna.space import get_space


def measure_config_for(
    genotype: Genotype,
    device: str | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> MeasureConfig:
    """Measure as the predictor's labels were measured (recorded in the genotype)."""
    return measure_config_from(genotype.info.get("measured_as") or {}, device, threads, backend)


def build(genotype: Genotype, batch: int = 64) -> Network:
    """The discrete network of ``genotype`` (only the chosen ops exist), after checking that
    it and a training step of ``batch`` images fit in memory."""
    space = get_space(genotype.space)
    n = genotype.net
    need = network_bytes(space, n, "fixed", batch)
    check_fits(f"the derived network ({n.cells} cells of {n.channels} channels)", need)
    return Network(space, n, "fixed", genotype.cells)


def cell_inputs(net: Network, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The inputs each cell receives in a forward pass of ``x`` (captured by hooks)."""
    seen: list[tuple[torch.Tensor, ...]] = []
    hooks = [
        c.register_forward_pre_hook(lambda m, args: seen.append(tuple(a.clone() for a in args)))
        for c in net.cells
    ]
    try:
        with torch.inference_mode():
            net.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def measure_network(
    net: Network, config: MeasureConfig | None = None, reference_ms: float | None = None
) -> dict:
    """Measured latency (ms) of the whole network and of each cell alone, batch from config.

    Normalised (``config.normalise``) to ``reference_ms``, the predictor's dataset's calibrated
    reference time when known, so measured and predicted cells are at one speed."""
    config = config or MeasureConfig()
    ref = {"space": net.space, "calibration": Calibration(reference_ms)}
    n = net.net
    x = torch.randn(config.batch, n.in_channels, n.resolution, n.resolution)
    per_cell = []
    for cell, inputs in zip(net.cells, cell_inputs(net, x), strict=True):
        per_cell.append(measure_module(cell, inputs, config, **ref))
    whole = measure_module(net, (x,), config, **ref)
    return {
        "measured_ms": whole.latency_ms,
        "measured_ci_ms": whole.ci_half_width_ms,
        "measured_cells_ms": float(sum(e.latency_ms for e in per_cell)),
        "measured_per_cell_ms": [e.latency_ms for e in per_cell],
        "backend": config.backend,  # the runtime every measured_* is the time of
        "fingerprint": config_fingerprint(config),
    }


def train_network(
    net: nn.Module,
    data: ImageData,
    epochs: int,
    seed: int = 0,
    batch: int = 64,
    lr: float = 0.025,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Train from scratch (SGD + cosine, DARTS's settings), test on the held-out split."""
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters") and m is not net:
            m.reset_parameters()
    opt = torch.optim.SGD(net.parameters(), lr, momentum=0.9, weight_decay=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs), eta_min=lr / 25)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    t0 = time.perf_counter()
    for ep in range(epochs):
        net.train()
        order = torch.randperm(n, generator=g)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, n - batch + 1 if n >= batch else 1, batch):
            idx = order[i : i + batch]
            logits = net(data.x_train[idx])
            loss = F.cross_entropy(logits, data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == data.y_train[idx]).sum())
            seen += len(idx)
        sched.step()
        if on_epoch:
            on_epoch(ep + 1, total / max(seen, 1), correct / max(seen, 1))
    return {"accuracy": test_accuracy(net, data), "train_s": time.perf_counter() - t0}


@torch.no_grad()
def test_accuracy(net: nn.Module, data: ImageData, batch: int = 256) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(data.y_test), batch):
        logits = net(data.x_test[i : i + batch])
        correct += int((logits.argmax(1) == data.y_test[i : i + batch]).sum())
    return correct / max(len(data.y_test), 1)


def evaluate_arch(
    genotype: Genotype,
    data: str | ImageData = "mnist5k",
    epochs: int = 5,
    seed: int = 0,
    limit: int | None = None,
    measure: MeasureConfig | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    weights_out: str | Path | None = None,
    device: str | None = None,
) -> dict:
    """``measured_ms, predicted_ms, accuracy, params`` and the details behind them.

    ``weights_out``: save the trained network's weights there (safetensors), for export.
    ``device``: where the network trains (:func:`lenna.search.device.compute_device`); its
    latency is timed on ``measure``'s device, by default the predictor's labels'."""
    if isinstance(data, str):
        data = load_data(data, seed=seed, limit=limit)
    net = build(genotype)
    _check_data(genotype, data)
    if on_stage:
        on_stage("measuring latency")
    measure = measure or measure_config_for(genotype)
    z0 = (genotype.info.get("measured_as") or {}).get("reference_ms") if measure.normalise else None
    lat = measure_network(net, measure, z0)
    if on_stage:
        on_stage(f"training {epochs} epochs")
    dev = compute_device(device)
    trained = (
        train_network(net.to(dev), data.to(dev), epochs, seed, on_epoch=on_epoch)
        if epochs > 0
        else {
            "accuracy": math.nan,
            "train_s": 0.0,
        }
    )
    if weights_out is not None:
        save_state(net, weights_out)
    pred, whole = genotype.predicted_ms, genotype.predicted_network_ms
    budget = genotype.budget_ms
    return {
        "space": genotype.space,
        "lam": genotype.lam,
        **lat,
        "predicted_ms": pred,
        "predicted_per_cell_ms": genotype.predicted_cells_ms,
        "prediction_error": (pred - lat["measured_cells_ms"]) / lat["measured_cells_ms"]
        if pred is not None
        else None,
        "predicted_fixed_ms": genotype.predicted_fixed_ms,
        "predicted_network_ms": whole,
        "network_prediction_error": (whole - lat["measured_ms"]) / lat["measured_ms"]
        if whole is not None
        else None,
        "budget_ms": budget,
        "within_budget": None if budget is None else bool(lat["measured_ms"] <= budget),
        "accuracy": trained["accuracy"],
        "train_s": trained["train_s"],
        "epochs": epochs,
        "params": sum(p.numel() for p in net.parameters()),
        "data": data.name,
        "device": str(dev),  # where it trained; the latency's device is in the fingerprint
    }


def save_state(net: nn.Module, path: str | Path) -> Path:
    """A network's weights and BN statistics as safetensors (atomic, no pickle)."""
    from safetensors.torch import save_file

    from lenna.atomic import write_with

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return write_with(path, lambda tmp: save_file(state, str(tmp)))


def _check_data(genotype: Genotype, data: ImageData) -> None:
    n = genotype.net
    got = (data.in_channels, data.num_classes, data.resolution)
    if got != (n.in_channels, n.num_classes, n.resolution):
        raise InputError(
            f"the genotype's network takes {n.in_channels}×{n.resolution}² images in "
            f"{n.num_classes} classes; data {data.name!r} has {got[0]}×{got[2]}² in {got[1]}"
        )
