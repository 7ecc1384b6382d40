"""``lenna train`` and ``lenna evaluate``: fit latency predictors and compare them."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import typer
from rich.table import Table

from lenna.atomic import missing_folder
from lenna.cli.console import console
from lenna.cli.options import check_out_file, check_seed
from lenna.errors import InputError
from lenna.folder_lock import held_folder
from lenna.predict import list_kinds, load_data, load_predictor, save_predictor, train_predictor
from lenna.predict.splits import SPLITS
from lenna.predict.train import EVAL_SPLITS, evaluate_model, split_masks

err = console(stderr=True)


def train_cmd(
    db: Path = typer.Argument(..., help="Dataset file measured by `lenna measure`."),
    model: str = typer.Option(
        ..., "--model", help="lut, elasticnet, mlp, gbdt, lut+mlp or additive."
    ),
    out: Path = typer.Option(..., "--out", help="Model folder to write (JSON + safetensors)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the training."),
    split: str = typer.Option(
        "random",
        "--split",
        help="random, or channels: hold out every row above the 90th "
        "percentile of channels (extrapolation).",
    ),
    include_flagged: bool = typer.Option(
        False, "--include-flagged", help="Also train on rows the drift guard flagged."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace the model already in --out (kept whole until then)."
    ),
) -> None:
    """Train a latency predictor on a dataset's training split; held-out ids go with it."""
    if model not in list_kinds():
        raise InputError(f"unknown model {model!r}; expected one of: {', '.join(list_kinds())}")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    check_seed(seed)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: {missing_folder(out.parent)}")
    with held_folder(out, "train"):  # a second train into out at once is refused
        if (out / "model.json").exists() and not force:
            raise InputError(f"--out {out} already holds a model; pass --force to replace it")
        data = load_data(db, include_flagged=include_flagged)  # refused: no folder is left
        with err.status(f"training {model} on {len(data)} samples"):
            m = train_predictor(data, model, seed=seed, split=split)
        save_predictor(m, out)
    h = m.info["metrics"]["held_out"]
    err.print(
        f"{model}: held-out MAPE {h['mape']:.2f} %, {h['within_10']:.1f} % within ±10 %, "
        f"RMSE {h['rmse_ms']:.3f} ms on {h['n']} rows -> {out}"
    )


def evaluate_cmd(
    models: list[Path] = typer.Argument(..., help="Model folders to compare."),
    data: Path = typer.Option(..., "--data", help="Dataset file to evaluate on."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    figure: Path = typer.Option(None, "--figure", help="Write predicted-vs-measured figure."),
) -> None:
    """Compare models side by side on rows they never saw (held-out, extrapolation, one-hot).

    On the dataset a model was trained on, only its stored held-out ids count; on any
    other dataset every row does.
    """
    if figure is not None and figure.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError(f"--figure must end in .png, .svg or .pdf, got {figure.name!r}")
    if figure is not None:  # before the evaluation, not after it
        check_out_file(figure, "--figure")
    seen: set[Path] = set()
    for path in models:
        if path.resolve() in seen:
            raise InputError(f"model {path} is given twice; give each model once")
        seen.add(path.resolve())
    ds = load_data(data)
    results, scatter = {}, {}
    for path in models:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = load_predictor(path, space=ds.space.name)
        for w in caught:
            err.print(f"[yellow]warning:[/] {w.message}")
        # a folder name two models share would show one of them: those are named by path
        name = path.name if [p.name for p in models].count(path.name) == 1 else str(path)
        splits = evaluate_model(m, ds)
        # DESIGN's contract: per model the held-out figures at the top, the breakdown below
        results[name] = {
            "kind": m.kind,
            "differentiable": m.differentiable,
            **splits["held_out"],
            "splits": splits,
        }

        held = split_masks(m, ds)["held_out"]
        scatter[f"{name} ({m.kind})"] = (ds.y[held], m.predict_features(ds.X[held]))
    if figure is not None:
        from lenna.report.scatter import plot_predicted_vs_measured

        plot_predicted_vs_measured(scatter, figure, title=f"held-out rows of {data.name}")
    if as_json:
        typer.echo(json.dumps(_finite(results), indent=2, allow_nan=False))
        return
    table = Table(
        "model",
        "kind",
        "split",
        "n",
        "RMSE ms",
        "MAPE %",
        "±5 %",
        "±10 %",
        "R²",
        "τ",
        title=f"on {data}",
    )
    for name, r in results.items():
        for s in EVAL_SPLITS:
            x = r["splits"][s]
            table.add_row(
                name,
                r["kind"] + ("" if r["differentiable"] else " (not diff.)"),
                s,
                str(x["n"]),
                _cell(x["rmse_ms"], ".3f"),
                _cell(x["mape"], ".2f"),
                _cell(x["within_5"], ".1f"),
                _cell(x["within_10"], ".1f"),
                _cell(x["r2"], ".3f"),
                _cell(x["kendall_tau"], ".3f"),
            )
    out = console()
    out.width = max(out.width, 132)
    out.print(table)


def _cell(v: float, spec: str) -> str:
    """A table cell: "-" where a figure is undefined (an empty split, R² of one row)."""
    return format(v, spec) if math.isfinite(v) else "-"


def _finite(x: object) -> object:
    """NaN/inf (an empty split's R², say) as JSON null, so the output is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
