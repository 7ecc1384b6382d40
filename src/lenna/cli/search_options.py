"""Options and config shared by ``lenna search`` and ``lenna sweep`` (and the few
``lenna evaluate-arch`` takes too): one definition, so the commands cannot drift apart in what
an option means."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from lenna.errors import InputError
from lenna.search.config import SPEED_ONLY, SearchConfig
from lenna.search.folder import stored_config
from lenna.search.network import NetConfig
from lenna.search.presets import with_preset

# ---- options shared by `search` and `sweep` ------------------------------------------------
SPACE = typer.Option("lenna", "--space", help="Search space (lenna, darts).")
PREDICTOR = typer.Option(
    None,
    "--predictor",
    help="Latency model folder (`lenna train`); needed for λ > 0, a budget, and any sweep.",
)
DATA = typer.Option(
    "mnist5k",
    "--data",
    help="mnist5k (offline default), digits, synthetic, cifar10:DIR or cifar100:DIR.",
)
LIMIT = typer.Option(
    2000,
    "--limit",
    help="Training images the search uses (half for the weights, half for α; 0: all).",
)
EPOCHS = typer.Option(8, "--epochs", help="Search epochs.")
WARMUP = typer.Option(
    0,
    "--warmup",
    help="First epochs train only the weights, α frozen (as FBNet and ProxylessNAS do).",
)
SEED = typer.Option(0, "--seed", help="Seed of data order, gates and initialisation.")
FORM = typer.Option("linear", "--form", help="Latency term: linear (CE + λ·E/ref) or log.")
REF = typer.Option(None, "--ref-ms", help="Reference latency (default: E at uniform α).")
TARGET = typer.Option(
    None, "--target-ms", help="With λ > 0: penalise only cell latency above this (ms)."
)
BUDGET = typer.Option(
    None,
    "--budget-ms",
    help="Whole-network latency budget (ms): one search, no λ; the derived network is "
    "predicted within it (a multiplier rises while it is over).",
)
BUDGET_LR = typer.Option(
    0.2,
    "--budget-lr",
    help="Step of the budget's multiplier per α step, per unit of relative excess "
    "((predicted − budget) / budget).",
)
FIXED = typer.Option(
    None,
    "--fixed-ms",
    help="Latency (ms) of the network outside its cells. Default: measured at the start, as the "
    "labels are, with each darts cell's input preprocessing. Giving it skips that "
    "measurement and sets the preprocessing offsets to 0.",
)
EXTRAP = typer.Option(
    False, "--allow-extrapolation", help="Search cells outside the predictor's training ranges."
)
MODE = typer.Option("weighted", "--mode", help="weighted (DARTS) or gated (one sampled path).")
UNROLLED = typer.Option(False, "--unrolled", help="Second-order DARTS (slower).")
BATCH = typer.Option(64, "--batch", help="Images per step.")
CHANNELS = typer.Option(8, "--channels", help="Width of the first cells (doubles per reduction).")
CELLS = typer.Option(3, "--cells", help="Cells, at most 1000 (reductions at 1/3 and 2/3 of depth).")
ARCH_LR = typer.Option(
    3e-3, "--arch-lr", help="Adam lr of α (10× DARTS's: searches here are short)."
)
THREADS = typer.Option(
    None,
    "--threads",
    help="CPU threads for training (default: torch's default; with sweep --ray, 1 per task).",
)
PRESET = typer.Option(
    None,
    "--preset",
    help="Start from a published search's shapes and recipe (darts-cifar10: DARTS's first-order "
    "CIFAR-10 search); options you give override its values; config.json records them all.",
)
AUGMENT = typer.Option(
    False,
    "--augment/--no-augment",
    help="Random crop (padding 4) and horizontal flip of every batch, on the device (CIFAR's "
    "standard augmentation; on in the darts-cifar10 preset).",
)
AMP = typer.Option(
    "auto",
    "--amp",
    help="Mixed precision of the network: off, bf16, or auto (bf16 on a GPU that has it, else "
    "off). α, the latency term and the loss stay in float32/float64.",
)
CHANNELS_LAST = typer.Option(
    False,
    "--channels-last/--no-channels-last",
    help="Network and batches in channels-last memory layout (may speed up convolutions on a "
    "GPU, mostly with --amp bf16; the result is the same within float rounding).",
)
CUDA_GRAPH = typer.Option(
    True,
    "--cuda-graph/--no-cuda-graph",
    help="On a GPU, capture each epoch's search step as a CUDA graph and replay it (about 3× "
    "faster at DARTS's size; weighted mode and first order only, else the step runs eagerly).",
)
DEVICE = typer.Option(
    "auto",
    "--device",
    help="Where the supernet, α, the latency term and training run: auto (a GPU when there "
    "is one), cpu, cuda or cuda:N. Latency is still predicted for the device of the labels.",
)

NET_OPTIONS = ("channels", "cells")


TARGET_ALONE = (
    "--target-ms acts only with --lam > 0 (it penalises cell latency above the target); "
    "for the best network under T ms, give --budget-ms T"
)
REF_ALONE = "--ref-ms acts only with --lam > 0: it scales the λ term (a budget scales by itself)"


def search_config(
    preset: str | None = None, given: set[str] | None = None, **kw: object
) -> SearchConfig:
    """The search config of the options. With a ``preset``, only the options in ``given``
    (typed on the command line) override its values; the rest are the preset's, then the
    defaults."""
    limit = kw.pop("limit")
    kw["limit"] = None if limit in (None, 0) else limit
    kw["a_lr"] = kw.pop("arch_lr")
    net = {k: kw.pop(k) for k in NET_OPTIONS}
    if preset is None:
        return SearchConfig(net=NetConfig(**net), **kw)
    given = given or set()
    cli = {"a_lr": "arch_lr"}
    user = {k: v for k, v in kw.items() if cli.get(k, k) in given}
    user["net"] = {k: v for k, v in net.items() if k in given}
    d = with_preset(preset, user)
    return SearchConfig(**{**d, "net": NetConfig(**d["net"])})


def typed_options(ctx: typer.Context, options: dict) -> set[str]:
    """The options typed on the command line (not defaults)."""
    return {
        k
        for k in options
        if ctx.get_parameter_source(k) is not None
        and not ctx.get_parameter_source(k).name.startswith("DEFAULT")
    }


def resumed_config(out: Path, options: dict, ctx: typer.Context) -> SearchConfig:
    """The stored config of ``out``; options typed on the command line must agree with it."""
    stored = stored_config(out)
    given = search_config(given=typed_options(ctx, options), **options).to_dict()
    keys = {"channels": "net", "cells": "net", "arch_lr": "a_lr"}
    differ = []
    for name in options:
        if ctx.get_parameter_source(name).name.startswith("DEFAULT") or name in SPEED_ONLY:
            continue  # (a run may continue on another device, in another memory layout)
        key = keys.get(name, name)
        if key == "net":
            if stored.net.to_dict()[name] != given["net"][name]:
                differ.append(f"--{name.replace('_', '-')}")
        elif stored.to_dict().get(key) != given.get(key):
            differ.append(f"--{name.replace('_', '-')}")
    if differ:
        raise InputError(
            f"--resume: {', '.join(differ)} differ from the run's {out / 'config.json'}; "
            "leave them out to continue it as it was started"
        )
    speed = {k: options[k] for k in SPEED_ONLY if k in typed_options(ctx, options)}
    return replace(stored, **{"device": options.get("device") or stored.device, **speed})
