"""``lenna evaluate-arch``: build the derived network, measure it for real, train it,
compare with what the search predicted."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer
from rich.table import Table

from lenna.cli.console import console
from lenna.cli.options import check_out_file, check_seed
from lenna.cli.search_options import CHANNELS_LAST, NET_OPTIONS, typed_options
from lenna.errors import InputError
from lenna.jsonsafe import dumps
from lenna.search.device import compute_device
from lenna.search.folder import NETWORK_WEIGHTS
from lenna.search.genotype import Genotype
from lenna.search.recipe import TrainRecipe
from lenna.search.verify import evaluate_arch, measure_config_for

err = console(stderr=True)

EVAL_CUDA_GRAPH = typer.Option(
    False,
    "--cuda-graph/--no-cuda-graph",
    help="On a GPU, capture each epoch's training step as a CUDA graph and replay it "
    "(opt-in: not yet run on a GPU; the search's own step is graphed by default).",
)

EVAL_PRESET = typer.Option(
    None,
    "--preset",
    help="Start from a published training recipe (darts-cifar10-eval: DARTS's CIFAR-10 "
    "evaluation, 20 cells of 36 channels, 600 epochs): its values replace the defaults shown "
    "for the training options; options you give override them; the JSON result records all.",
)
RECIPE_OPTIONS = {  # option name -> TrainRecipe field
    "epochs": "epochs",
    "batch": "batch",
    "lr": "lr",
    "lr_min": "lr_min",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "augment": "augment",
    "cutout": "cutout",
    "drop_path": "drop_path",
    "aux_weight": "aux_weight",
    "amp": "amp",
    "channels_last": "channels_last",
    "cuda_graph": "cuda_graph",
}


def _recipe(ctx: typer.Context, preset: str | None, options: dict) -> TrainRecipe:
    """The training recipe of evaluate-arch's options: with a ``preset``, only the options
    typed on the command line override its values."""
    given = typed_options(ctx, options) if preset is not None else set(options)
    values = {RECIPE_OPTIONS[k]: v for k, v in options.items() if k in RECIPE_OPTIONS}
    user = {k: v for k, v in values.items() if k in given}
    user["net"] = {k: options[k] for k in NET_OPTIONS if options[k] is not None and k in given}
    return TrainRecipe.of(preset, user)


def evaluate_arch_cmd(
    ctx: typer.Context,
    genotype: Path = typer.Argument(..., help="genotype.json written by `lenna search`."),
    data: str = typer.Option(
        None, "--data", help="Data set to train and test on (default: the search's)."
    ),
    epochs: int = typer.Option(
        5, "--epochs", help="Training epochs from scratch (0: skip; with --preset: its own)."
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed of initialisation and data order (default: the search's)."
    ),
    limit: int = typer.Option(
        None, "--limit", help="Use only this many training images (default 0 = all)."
    ),
    device: str = typer.Option(
        "auto", "--device", help="Where the network trains: auto, cpu, cuda or cuda:N."
    ),
    measure_device: str = typer.Option(
        None,
        "--measure-device",
        help="Device to time the network on (default: the predictor's labels').",
    ),
    measure_threads: int = typer.Option(
        None, "--measure-threads", help="Threads while measuring (default: as the labels)."
    ),
    backend: str = typer.Option(
        None,
        "--backend",
        help="Runtime to measure in: torch (eager) or onnxruntime (default: the labels').",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    weights_out: Path = typer.Option(
        None,
        "--weights-out",
        help="Where to save the trained weights (default: network.safetensors beside the "
        "genotype, where `lenna export` finds them; one saved there before is kept, and then "
        "this run's weights are not saved).",
    ),
    preset: str = EVAL_PRESET,
    channels: int = typer.Option(
        None, "--channels", help="Train at this width of the first cells (default: searched)."
    ),
    cells: int = typer.Option(
        None, "--cells", help="Train with this many cells (default: as searched)."
    ),
    batch: int = typer.Option(64, "--batch", help="Images per training step."),
    lr: float = typer.Option(0.025, "--lr", help="SGD learning rate at the start."),
    lr_min: float = typer.Option(
        None, "--lr-min", help="Learning rate the cosine ends at (default: --lr / 25)."
    ),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    weight_decay: float = typer.Option(3e-4, "--weight-decay", help="SGD weight decay."),
    grad_clip: float = typer.Option(5.0, "--grad-clip", help="Clip the gradients' norm to this."),
    augment: bool = typer.Option(
        False, "--augment/--no-augment", help="Random crop (padding 4) and flip, on the device."
    ),
    cutout: int = typer.Option(
        0, "--cutout", help="Side (pixels) of the square cut out of each training image; 0: off."
    ),
    drop_path: float = typer.Option(
        0.0,
        "--drop-path",
        help="Drop-path probability (0 to 1) at the last epoch, rising linearly from 0; 0: off.",
    ),
    aux_weight: float = typer.Option(
        0.0,
        "--aux-weight",
        help="Loss weight of an auxiliary head at 2/3 depth (DARTS: 0.4); 0: no head.",
    ),
    amp: str = typer.Option(
        "auto",
        "--amp",
        help="Mixed precision of training: off, bf16, or auto (bf16 on a GPU that has it, else "
        "off). The loss stays in float32; latency is measured as the labels were.",
    ),
    channels_last: bool = CHANNELS_LAST,
    cuda_graph: bool = EVAL_CUDA_GRAPH,
) -> None:
    """Build the derived network, measure its latency for real, train it, compare.

    Reports measured_ms (whole network) beside its prediction (predicted_network_ms: the
    cells, the fixed part and, under ONNX Runtime, the whole-network gap measured before the
    search) and, for a budget search, within_budget; measured_cells_ms (each cell timed alone;
    what the cells' prediction is of) beside predicted_ms; accuracy on the held-out test split;
    params. A network resized (--preset, --channels, --cells) is measured as trained, and the
    searched shape's predictions are left out.
    """
    if epochs < 0:
        raise InputError(f"--epochs must be >= 0, got {epochs}")
    options = {k: v for k, v in locals().items() if k in RECIPE_OPTIONS or k in NET_OPTIONS}
    recipe = _recipe(ctx, preset, options)
    if weights_out is not None:
        check_out_file(weights_out, "--weights-out")
        check_weights_target(weights_out, genotype)
    kept = None  # weights saved before, beside the genotype: never replaced unasked
    if weights_out is None and recipe.epochs > 0:
        if os.access(genotype.parent, os.W_OK):
            default = genotype.parent / NETWORK_WEIGHTS  # what `lenna export` picks up
            kept, weights_out = (default, None) if default.exists() else (None, default)
        else:
            err.print(
                f"note: {genotype.parent} is not writable, so the trained weights will not be "
                "saved; --weights-out FILE saves them"
            )
    g = Genotype.load(genotype)
    limit = None if limit == 0 else limit  # as in search: 0 means all
    compute_device(device)  # a bad device: one line before anything runs
    mcfg = measure_config_for(g, measure_device, measure_threads, backend)
    data = data or g.info.get("data") or "mnist5k"
    if seed is None:
        seed = check_seed(_genotype_seed(g), f"{genotype}: info.seed")
    check_seed(seed)
    if kept is not None:  # said before hours of training, not after
        err.print(
            f"note: {kept} holds weights saved before and is kept, so this run's weights "
            "will not be saved; --weights-out FILE saves them"
        )
    total = recipe.epochs
    with err.status("measuring and training") as status:
        res = evaluate_arch(
            g,
            data,
            None,  # the recipe's
            seed,
            limit,
            mcfg,
            on_stage=lambda s: status.update(s),
            on_epoch=lambda e, loss, acc: status.update(
                f"training: epoch {e}/{total}, loss {loss:.3f}, train acc {100 * acc:.1f} %"
            ),
            weights_out=weights_out,
            device=device,
            recipe=recipe,
        )
    if kept is not None:
        err.print(f"kept {kept} (saved before); these weights were not saved")
    if as_json:
        typer.echo(dumps(res, indent=2))
        return
    t = Table(title=f"{g.space} architecture, {g.searched_for}")
    cols = ["measured ms", "predicted ms"]
    if g.budget_ms is not None:
        cols.append("within budget")
    cols += ["cells measured ms", "cells predicted ms", "error", "accuracy", "params"]
    for col in cols:
        t.add_column(col, justify="right")
    pred = res["predicted_ms"]
    whole = res["predicted_network_ms"]
    budget = [] if g.budget_ms is None else ["yes" if res["within_budget"] else "no"]
    t.add_row(
        f"{res['measured_ms']:.3f}",
        "-" if whole is None else f"{whole:.3f}",
        *budget,
        f"{res['measured_cells_ms']:.3f}",
        "-" if pred is None else f"{pred:.3f}",
        "-" if res["prediction_error"] is None else f"{100 * res['prediction_error']:+.1f} %",
        "-" if math.isnan(res["accuracy"]) else f"{100 * res['accuracy']:.2f} %",
        f"{res['params']:,}",
    )
    console().print(t)
    if res["weights"] is not None:
        err.print(f"trained weights: {res['weights']} (`lenna export` exports them)")


def _genotype_seed(g: Genotype) -> int:
    """The seed a search stored in its genotype (0 when it stored none)."""
    v = g.info.get("seed", 0)
    if isinstance(v, float) and v.is_integer():  # JSON written by another tool: 3.0
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InputError(f"the genotype's info.seed must be an integer, got {v!r}")
    return v


def check_weights_target(path: Path, genotype: Path) -> None:
    """``--weights-out`` may replace an earlier weights file, never another kind of file:
    a typo must not turn a dataset or the genotype itself into safetensors."""
    if path.resolve() == genotype.resolve():
        raise InputError(f"--weights-out {path} is the genotype itself; give another file")
    if not path.exists():
        return
    from safetensors import SafetensorError, safe_open

    if path.is_file() and path.stat().st_size == 0:  # an empty file made for us (mktemp)
        return
    try:
        with safe_open(str(path), "pt") as f:
            if "net" in (f.metadata() or {}):  # what save_state writes: a network's weights
                return
    except PermissionError:
        raise InputError(f"--weights-out {path}: permission denied") from None
    except (SafetensorError, OSError, ValueError):
        pass
    raise InputError(
        f"--weights-out {path} exists and is not a network's weights file; refusing to replace it"
    )
