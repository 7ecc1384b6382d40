"""Verify a derived architecture: measure it for real, train it from scratch, compare.

Two comparisons: the *cells'* measured latency (each cell timed alone on the input it gets in
the network) against their prediction (the predictor's sum, with each `darts` cell's
preprocessing offset), which tests the predictor; and the whole network
measured against its prediction (cells plus the measured fixed part), the number a latency
budget is about.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.fixed import measure_module
from lenna.measure.reference import (
    ANCHORS,
    MATCHED,
    Calibration,
    anchor_for,
    anchor_key,
    anchor_ratios,
)
from lenna.memory import check_fits
from lenna.search.datasets import ImageData, load_data
from lenna.search.device import compute_device
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig, Network, cell_inputs, cell_specs, network_bytes
from lenna.search.recipe import TrainRecipe
from lenna.search.timing import calibration_from, measure_config_from
from lenna.search.train import check_channels_last, train_network
from lenna.space import SearchSpace, get_space


def measure_config_for(
    genotype: Genotype,
    device: str | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> MeasureConfig:
    """Measure as the predictor's labels were measured (recorded in the genotype)."""
    return measure_config_from(genotype.info.get("measured_as") or {}, device, threads, backend)


def build(
    genotype: Genotype, batch: int = 64, net: NetConfig | None = None, device: str = "cpu"
) -> Network:
    """The discrete network of ``genotype`` (only the chosen ops exist), at the genotype's
    shape or ``net``'s, after checking that it and a training step of ``batch`` images fit in
    the memory of ``device`` (where it will train)."""
    space = get_space(genotype.space)
    n = net or genotype.net
    need = network_bytes(space, n, "fixed", batch)
    check_fits(f"the derived network ({n.cells} cells of {n.channels} channels)", need, device)
    return Network(space, n, "fixed", genotype.cells)


def _covering(
    cal: Calibration | None, space: SearchSpace, config: MeasureConfig, sizes: list
) -> Calibration:
    """``cal`` with a ratio for every anchor the cells of ``sizes`` are timed beside: a
    network resized beyond its dataset's range needs anchors the dataset never calibrated,
    so the reference mode's anchors are calibrated here (once per process) and the stored
    ratios kept where both exist."""
    cal = cal or Calibration()
    if not config.normalise or cal.ratios is None or config.reference not in MATCHED:
        return cal
    need = {anchor_key(anchor_for(c, h, config.reference)) for c, h in sizes}
    if need <= set(cal.ratios) | {anchor_key(ANCHORS[0])}:
        return cal
    return Calibration(cal.z0_ms, {**anchor_ratios(space, config), **cal.ratios})


def measure_network(
    net: Network, config: MeasureConfig | None = None, calibration: Calibration | None = None
) -> dict:
    """Measured latency (ms) of the whole network and of each cell alone, batch from config.

    Normalised (``config.normalise``) to ``calibration``, the predictor's dataset's (its
    ``Z0`` and anchors' ratios) when known, so measured and predicted cells are at one speed:
    each cell is timed beside the anchor its label would have been (``config.reference``)
    when ``calibration`` carries its dataset's stored ratios, else (a predictor from before
    they were kept) beside the primary as its verification always was; the whole network
    beside the primary."""
    config = config or MeasureConfig()
    n = net.net
    specs = cell_specs(net.space, n)
    sizes = [(s.channels, s.resolution) for s in specs]
    ref = {"space": net.space, "calibration": _covering(calibration, net.space, config, sizes)}
    x = torch.randn(config.batch, n.in_channels, n.resolution, n.resolution)
    per_cell = []
    for cell, spec, inputs in zip(net.cells, specs, cell_inputs(net, x), strict=True):
        size = (spec.channels, spec.resolution) if ref["calibration"].ratios is not None else None
        per_cell.append(measure_module(cell, inputs, config, size=size, **ref))
    whole = measure_module(net, (x,), config, **ref)
    return {
        "measured_ms": whole.latency_ms,
        "measured_ci_ms": whole.ci_half_width_ms,
        "measured_cells_ms": float(sum(e.latency_ms for e in per_cell)),
        "measured_per_cell_ms": [e.latency_ms for e in per_cell],
        "backend": config.backend,  # the runtime every measured_* is the time of
        "fingerprint": config_fingerprint(config),
    }


def trained_shape(genotype: Genotype, recipe: TrainRecipe) -> NetConfig:
    """The genotype's network resized as the recipe says (e.g. 20 cells of 36 channels)."""
    return replace(genotype.net, **recipe.net) if recipe.net else genotype.net


def evaluate_arch(
    genotype: Genotype,
    data: str | ImageData = "mnist5k",
    epochs: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    measure: MeasureConfig | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    weights_out: str | Path | None = None,
    device: str | None = None,
    recipe: TrainRecipe | None = None,
) -> dict:
    """``measured_ms, predicted_ms, accuracy, params`` and the details behind them.

    ``recipe``: how the network is trained and at what shape (default: the genotype's
    shape, plain SGD + cosine, 5 epochs); ``epochs`` (unless ``None``) overrides its epochs. A
    resized network is measured as trained; the genotype's predictions and budget are of the
    searched shape, so they are not compared with it. ``weights_out``: save the trained
    network's weights there (safetensors), for export. ``device``: where the network trains
    (:func:`lenna.search.device.compute_device`); its latency is timed on ``measure``'s
    device, by default the predictor's labels'."""
    recipe = recipe or TrainRecipe()
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    shape = trained_shape(genotype, recipe)
    if recipe.preset and shape.stem_multiplier != 1 and not get_space(genotype.space).preprocess:
        raise InputError(
            f"preset {recipe.preset} is DARTS's recipe for `darts`-space cells; this genotype is "
            f"of space {genotype.space!r}, whose first cell takes the stem's width, so the stem "
            f"multiplier must be 1 (got {shape.stem_multiplier})"
        )
    dev = compute_device(device)
    net = build(genotype, recipe.batch, shape, str(dev))  # too big or impossible: one line
    if recipe.channels_last and recipe.epochs > 0:
        check_channels_last(net, dev)  # before minutes of timing, not after
    if isinstance(data, str):
        data = load_data(data, seed=seed, limit=limit)
    _check_data(shape, data)
    if recipe.epochs > 0 and recipe.cutout >= 2 * data.resolution - 1:
        raise InputError(
            f"a cutout of {recipe.cutout} pixels blanks every {data.resolution}×"
            f"{data.resolution} image wherever it is centred; use --cutout below "
            f"{2 * data.resolution - 1}"
        )
    if on_stage:
        on_stage("measuring latency")
    measure = measure or measure_config_for(genotype)
    cal = calibration_from(genotype.info.get("measured_as") or {}, measure)
    lat = measure_network(net, measure, cal)
    if on_stage:
        on_stage(f"training {recipe.epochs} epochs")
    trained = (
        train_network(net.to(dev), data.to(dev), None, seed, on_epoch, recipe)
        if recipe.epochs > 0
        else {
            "accuracy": math.nan,
            "train_s": 0.0,
        }
    )
    training = {"epochs": recipe.epochs, "data": data.name, "preset": recipe.preset}
    saved = _save_trained(net, weights_out, genotype, training) if weights_out else None
    searched = shape == genotype.net  # the predictions are of the searched network
    pred = genotype.predicted_ms if searched else None
    whole = genotype.predicted_network_ms if searched else None
    budget = genotype.budget_ms
    return {
        "space": genotype.space,
        "lam": genotype.lam,
        **lat,
        "predicted_ms": pred,
        "predicted_per_cell_ms": genotype.predicted_cells_ms if searched else None,
        "prediction_error": (pred - lat["measured_cells_ms"]) / lat["measured_cells_ms"]
        if pred is not None
        else None,
        "predicted_fixed_ms": genotype.predicted_fixed_ms if searched else None,
        "predicted_gap_ms": genotype.predicted_gap_ms if searched else None,
        "predicted_network_ms": whole,
        "network_prediction_error": (whole - lat["measured_ms"]) / lat["measured_ms"]
        if whole is not None
        else None,
        "budget_ms": budget,
        # the budget, like the predictions, is of the searched shape
        "within_budget": None
        if budget is None or not searched
        else bool(lat["measured_ms"] <= budget),
        "accuracy": trained["accuracy"],
        "train_s": trained["train_s"],
        "epochs": recipe.epochs,
        "params": sum(p.numel() for p in net.parameters()),  # the auxiliary head's not counted
        "data": data.name,
        "device": str(dev),  # where it trained; the latency's device is in the fingerprint
        "net": shape.to_dict(),  # the network measured and trained
        "train": recipe.to_dict(),  # how it was trained (every setting, and the preset)
        "amp_used": trained.get("amp", "off"),  # the precision "auto" resolved to
        "cuda_graph_used": trained.get("cuda_graph", False),  # whether steps replayed a graph
        "weights": saved,  # where the trained weights were saved (None: not saved)
    }


def _save_trained(net: Network, path: str | Path, genotype: Genotype, training: dict) -> str | None:
    """Save the trained weights; a failure (a full disk, a folder not writable) is a warning,
    not the loss of minutes or hours of measuring and training."""
    try:
        return str(save_state(net, path, genotype, training))
    except OSError as e:
        warnings.warn(f"the trained weights were not saved to {path} ({e})", stacklevel=3)
        return None


def save_state(
    net: nn.Module,
    path: str | Path,
    genotype: Genotype | None = None,
    training: dict | None = None,
) -> Path:
    """A network's weights and BN statistics as safetensors (atomic, no pickle), with the
    network's shape in the metadata when it is a :class:`Network` (a recipe may have resized
    it: ``lenna export`` then builds that shape); given ``genotype``, its cells (an export
    refuses weights trained for other cells) and ``training`` (epochs, data: said at export)."""
    import json

    from safetensors.torch import save_file

    from lenna.atomic import write_with

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"net": json.dumps(net.net.to_dict())} if isinstance(net, Network) else {}
    if genotype is not None:
        meta["cells"] = cells_key(genotype)
    if training is not None:
        meta["training"] = json.dumps(training, sort_keys=True)
    return write_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta or None))


def cells_key(genotype: Genotype) -> str:
    """The architecture a weights file was trained for: its space and cells, as JSON."""
    import json

    return json.dumps({"space": genotype.space, "cells": genotype.cells}, sort_keys=True)


def _metadata(path: str | Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return {}


def saved_shape(path: str | Path) -> NetConfig | None:
    """The network shape :func:`save_state` recorded in a weights file (``None``: a file from
    before shapes were recorded, or not a weights file; loading it says which). A recorded
    shape that does not parse is refused: building the genotype's own shape instead would
    load the weights into a network they were not trained in."""
    import json

    text = _metadata(path).get("net")
    if not text:
        return None
    try:
        net = json.loads(text)
        if not isinstance(net, dict):
            raise ValueError(f"expected an object, got {type(net).__name__}")
        return NetConfig.from_dict(net)
    except (ValueError, TypeError, InputError) as e:
        raise InputError(f"{path}: its recorded network shape is unreadable ({e})") from None


def saved_cells(path: str | Path) -> str | None:
    """The :func:`cells_key` a weights file records (``None``: saved without a genotype)."""
    return _metadata(path).get("cells")


def saved_training(path: str | Path) -> dict | None:
    """How the weights of a file were trained (epochs, data, preset; ``None``: not recorded)."""
    import json

    text = _metadata(path).get("training")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _check_data(n: NetConfig, data: ImageData) -> None:
    got = (data.in_channels, data.num_classes, data.resolution)
    if got != (n.in_channels, n.num_classes, n.resolution):
        raise InputError(
            f"the network takes {n.in_channels}×{n.resolution}² images in "
            f"{n.num_classes} classes; data {data.name!r} has {got[0]}×{got[2]}² in {got[1]}"
        )
