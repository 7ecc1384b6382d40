"""``lenna search``, ``lenna evaluate-arch``, ``lenna sweep``: latency-aware DARTS and its proof."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lenna.cli.app import interrupted
from lenna.cli.console import console
from lenna.cli.options import check_out_file, check_seed
from lenna.cli.progress import CountColumn, LineProgress, make_progress
from lenna.errors import InputError
from lenna.jsonsafe import dumps
from lenna.search.bilevel import StepStats
from lenna.search.config import SPEED_ONLY, SearchConfig
from lenna.search.device import compute_device
from lenna.search.folder import CONFIG, NETWORK_WEIGHTS, stored_config
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.presets import with_preset
from lenna.search.recipe import TrainRecipe
from lenna.search.run import run_search
from lenna.search.sweep import run_sweep
from lenna.search.verify import evaluate_arch, measure_config_for
from lenna.signals import stop_on_signals

err = console(stderr=True)

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
EVAL_CUDA_GRAPH = typer.Option(
    False,
    "--cuda-graph/--no-cuda-graph",
    help="On a GPU, capture each epoch's training step as a CUDA graph and replay it "
    "(opt-in: not yet run on a GPU; the search's own step is graphed by default).",
)
DEVICE = typer.Option(
    "auto",
    "--device",
    help="Where the supernet, α, the latency term and training run: auto (a GPU when there "
    "is one), cpu, cuda or cuda:N. Latency is still predicted for the device of the labels.",
)


def _numbers(option: str, text: str | None, default: str | None) -> list[float] | None:
    text = text if text is not None else default
    if text is None:
        return None
    items = [v.strip() for v in text.split(",")]
    try:
        values = [float(v) for v in items if v]
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"{option} needs at least one number, got {text!r}")
    if not all(items):  # "0,,1": a value lost in editing, not one to skip
        raise InputError(f"{option} has an empty item in {text!r}; remove the extra comma")
    return values


def sweep_table(rows: list[dict], title: str) -> Table:
    """One row per λ or budget: measured and predicted latency, accuracy."""
    by_budget = any(r.get("budget_ms") is not None for r in rows)
    t = Table(title=f"{'budget' if by_budget else 'λ'} sweep, {title}")
    first = ["budget ms", "measured ms", "predicted ms", "within"] if by_budget else ["λ"]
    rest = ["cells measured ms", "cells predicted ms", "accuracy"]
    if not by_budget:
        rest = ["measured ms", *rest]
    for col in first + rest:
        t.add_column(col, justify="right")
    for r in rows:
        pred, whole = r["predicted_ms"], r.get("predicted_network_ms")
        if by_budget:
            lead = [
                f"{r['budget_ms']:g}",
                f"{r['measured_ms']:.3f}",
                "-" if whole is None else f"{whole:.3f}",
                f"{r['measured_ms'] / r['budget_ms']:.2f}×",
            ]
        else:
            lead = [f"{r['lam']:g}", f"{r['measured_ms']:.3f}"]
        t.add_row(
            *lead,
            f"{r['measured_cells_ms']:.3f}",
            "-" if pred is None else f"{pred:.3f}",
            "-" if math.isnan(r["accuracy"]) else f"{100 * r['accuracy']:.2f} %",
        )
    return t


NET_OPTIONS = ("channels", "cells")


TARGET_ALONE = (
    "--target-ms acts only with --lam > 0 (it penalises cell latency above the target); "
    "for the best network under T ms, give --budget-ms T"
)
REF_ALONE = "--ref-ms acts only with --lam > 0: it scales the λ term (a budget scales by itself)"


def _config(preset: str | None = None, given: set[str] | None = None, **kw: object) -> SearchConfig:
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


def _given(ctx: typer.Context, options: dict) -> set[str]:
    """The options typed on the command line (not defaults)."""
    return {
        k
        for k in options
        if ctx.get_parameter_source(k) is not None
        and not ctx.get_parameter_source(k).name.startswith("DEFAULT")
    }


def _resumed(out: Path, options: dict, ctx: typer.Context) -> SearchConfig:
    """The stored config of ``out``; options typed on the command line must agree with it."""
    stored = stored_config(out)
    given = _config(given=_given(ctx, options), **options).to_dict()
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
    speed = {k: options[k] for k in SPEED_ONLY if k in _given(ctx, options)}
    return replace(stored, **{"device": options.get("device") or stored.device, **speed})


def _progress() -> Progress | LineProgress:
    return make_progress(
        err,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )


class _Bars:
    """Step bar per epoch with loss, accuracy and predicted latency; a line per epoch; a
    status line while the derived network is verified."""

    def __init__(self, bar: Progress, epochs: int, label: str = "") -> None:
        self.bar, self.epochs, self.label = bar, epochs, label
        self.task: TaskID | None = None
        self.epoch = 0
        self.verify: TaskID | None = None

    def step(self, st: StepStats, i: int, n: int) -> None:
        if self.task is None or st.epoch != self.epoch:
            self.epoch = st.epoch
            if self.task is not None:
                self.bar.remove_task(self.task)
            desc = f"{self.label}epoch {self.epoch}/{self.epochs}"
            self.task = self.bar.add_task(desc, total=n, info="")
        ms = "" if math.isnan(st.expected_ms) else f" E(lat) {st.expected_ms:.2f} ms"
        self.bar.update(
            self.task,
            completed=i,
            info=f"loss {st.w_loss:.3f} acc {100 * st.w_correct / max(1, st.batch):.0f}%{ms}",
        )

    def epoch_done(self, row: dict) -> None:
        ms = "" if math.isnan(row["predicted_ms"]) else f", E(latency) {row['predicted_ms']:.3f} ms"
        self.bar.console.print(
            f"{self.label}epoch {int(row['epoch'])}: w acc {100 * row['w_acc']:.1f} %, "
            f"α-half acc {100 * row['a_acc']:.1f} %{ms}, {row['epoch_s']:.0f} s"
        )

    def note(self, text: str) -> None:
        """Verification stage (measuring, training) of the derived network."""
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        if self.verify is None:
            self.verify = self.bar.add_task(f"{self.label}verify", total=None, info="")
        self.bar.update(self.verify, info=text)

    def on_event(self, kind: str, info: dict) -> None:
        if kind == "step":
            self.step(info["st"], info["i"], info["n"])
        elif kind == "epoch":
            self.epoch_done(info)
        elif kind == "eval":
            self.note(info["stage"])


def sweep_events(bar: Progress, epochs: int) -> Callable[[str, dict], None]:
    """An ``on_event`` for :func:`~lenna.search.sweep.run_sweep`: one :class:`_Bars` per λ
    or budget."""
    bars: dict[str, _Bars] = {}

    def on_event(kind: str, info: dict) -> None:
        label = info["label"]
        if kind == "point" or label not in bars:
            bars[label] = _Bars(bar, epochs, f"{label} ")
        if kind != "point":
            bars[label].on_event(kind, info)

    return on_event


def search_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Run folder (new, or existing with --resume)."),
    space: str = SPACE,
    predictor: str = PREDICTOR,
    lam: float = typer.Option(
        0.0,
        "--lam",
        help="λ: weight of the latency term (>= 0; 0.5 to 1 trades well in the docs' runs).",
    ),
    data: str = DATA,
    limit: int = LIMIT,
    epochs: int = EPOCHS,
    warmup: int = WARMUP,
    seed: int = SEED,
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run in --out."),
    form: str = FORM,
    ref_ms: float = REF,
    target_ms: float = TARGET,
    budget_ms: float = BUDGET,
    budget_lr: float = BUDGET_LR,
    fixed_ms: float = FIXED,
    allow_extrapolation: bool = EXTRAP,
    mode: str = MODE,
    unrolled: bool = UNROLLED,
    batch: int = BATCH,
    channels: int = CHANNELS,
    cells: int = CELLS,
    arch_lr: float = ARCH_LR,
    threads: int = THREADS,
    device: str = DEVICE,
    preset: str = PRESET,
    augment: bool = AUGMENT,
    amp: str = AMP,
    channels_last: bool = CHANNELS_LAST,
    cuda_graph: bool = CUDA_GRAPH,
) -> None:
    """Search a cell by DARTS plus a latency term (loss on α: CE + λ·predicted latency), or
    within a latency budget.

    Writes config.json, metrics.csv, alphas.jsonl, the checkpoint of the last finished epoch,
    genotype.json, figures and (when it measured the network outside the cells)
    fixed_part.json into --out. Ctrl-C keeps every finished epoch; --resume continues to the same
    result an uninterrupted run reaches (only --out is needed; options given must match).
    """
    options = {k: v for k, v in locals().items() if k not in ("ctx", "out", "resume")}
    given = _given(ctx, options)
    cfg = _resumed(out, options, ctx) if resume else _config(given=given, **options)
    if not resume and cfg.target_ms is not None and cfg.lam == 0 and cfg.budget_ms is None:
        raise InputError(TARGET_ALONE)
    if not resume and cfg.ref_ms is not None and cfg.lam == 0:
        raise InputError(REF_ALONE)
    with _progress() as bar:
        bars = _Bars(bar, cfg.epochs)
        try:
            with stop_on_signals():
                res = run_search(
                    cfg,
                    out,
                    resume=resume,
                    on_step=bars.step,
                    on_epoch=bars.epoch_done,
                    on_note=bar.console.print,
                )
        except KeyboardInterrupt as e:
            bar.stop()
            if (out / CONFIG).is_file():
                interrupted(e, f"finished epochs are saved in {out}; add --resume to continue")
            interrupted(e, "before the run folder was written; nothing to resume")
    err.print(derived_line(res.genotype, out / "genotype.json"))


def derived_line(g: Genotype, path: Path) -> str:
    """What a search derived and the latency predicted for it."""
    how = f"λ = {g.lam:g}" if g.budget_ms is None else f"budget {g.budget_ms:g} ms"
    pred = ""
    if g.predicted_network_ms is not None:
        gap = g.predicted_gap_ms or 0.0
        pred = (
            f", predicted {g.predicted_network_ms:.3f} ms for the whole network "
            f"({g.predicted_ms:.3f} ms cells + {g.predicted_fixed_ms:.3f} ms fixed part"
            + (f" {'+' if gap >= 0 else '−'} {abs(gap):.3f} ms whole-network gap)" if gap else ")")
        )
    elif g.predicted_ms is not None:
        pred = f", predicted {g.predicted_ms:.3f} ms for the cells"
    return f"derived {g.space} architecture ({how}){pred} -> {path}"


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
    given = _given(ctx, options) if preset is not None else set(options)
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
    how = f"λ = {g.lam:g}" if g.budget_ms is None else f"budget {g.budget_ms:g} ms"
    t = Table(title=f"{g.space} architecture, {how}")
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


def sweep_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Sweep folder (one run folder per λ or budget)."),
    lams: str = typer.Option(
        None, "--lams", help="Comma-separated λ values (default: 0,0.5 unless --budgets)."
    ),
    budgets: str = typer.Option(
        None, "--budgets", help="Comma-separated whole-network budgets (ms), instead of λ."
    ),
    space: str = SPACE,
    predictor: str = PREDICTOR,
    data: str = DATA,
    limit: int = LIMIT,
    epochs: int = EPOCHS,
    eval_epochs: int = typer.Option(5, "--eval-epochs", help="Training epochs per derived net."),
    eval_limit: int = typer.Option(
        None, "--eval-limit", help="Train derived nets on this many images (default 0 = all)."
    ),
    warmup: int = WARMUP,
    seed: int = SEED,
    form: str = FORM,
    ref_ms: float = REF,
    target_ms: float = TARGET,
    budget_lr: float = BUDGET_LR,
    fixed_ms: float = FIXED,
    allow_extrapolation: bool = EXTRAP,
    mode: str = MODE,
    batch: int = BATCH,
    channels: int = CHANNELS,
    cells: int = CELLS,
    arch_lr: float = ARCH_LR,
    threads: int = THREADS,
    device: str = DEVICE,
    preset: str = PRESET,
    augment: bool = AUGMENT,
    amp: str = AMP,
    channels_last: bool = CHANNELS_LAST,
    cuda_graph: bool = CUDA_GRAPH,
    ray: str = typer.Option(
        None, "--ray", help="Run each λ as a Ray task: auto, local, or HOST:PORT."
    ),
) -> None:
    """Search + evaluate-arch per λ or per budget; writes sweep.csv/json and a Pareto figure.

    Resumable: run the same command again and finished points are skipped.
    """
    if lams is not None and budgets is not None:
        raise InputError("give --lams or --budgets, not both")
    lam_values = None if budgets is not None else _numbers("--lams", lams, "0,0.5")
    budget_values = _numbers("--budgets", budgets, None)
    kw = {
        k: v
        for k, v in locals().items()
        if k not in ("ctx", "out", "lams", "budgets", "eval_epochs", "eval_limit", "ray")
    }
    kw.pop("lam_values")
    kw.pop("budget_values")
    if not predictor:
        raise InputError("a sweep needs --predictor MODEL")
    new_sweep = not out.exists()  # a sweep begun before this check still resumes
    if new_sweep and target_ms is not None and lam_values and not any(v > 0 for v in lam_values):
        raise InputError(TARGET_ALONE)
    if new_sweep and ref_ms is not None and not any(v > 0 for v in lam_values or []):
        raise InputError(REF_ALONE)
    if ray is not None:
        from lenna.measure.fleet import require_ray

        require_ray()
    cfg = _config(given=_given(ctx, kw), **kw, lam=0.0)
    with _progress() as bar:
        try:
            with stop_on_signals():
                rows = run_sweep(
                    cfg,
                    lam_values,
                    out,
                    eval_epochs,
                    on_event=sweep_events(bar, cfg.epochs),
                    eval_limit=None if eval_limit == 0 else eval_limit,  # 0: all, as --limit
                    ray_address=ray,
                    budgets=budget_values,
                )
        except KeyboardInterrupt as e:
            bar.stop()
            if out.is_dir():
                interrupted(e, f"progress is saved in {out}; run the same command to continue")
            interrupted(e, "before any point began; nothing was saved")
    console().print(sweep_table(rows, f"{cfg.space} space, {cfg.data}"))
    err.print(f"table and Pareto figure in {out}")


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
