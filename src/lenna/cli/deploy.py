"""``lenna export``: the derived network as an ONNX file, checked under ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from lenna.cli.console import console
from lenna.cli.options import check_out_file, check_seed
from lenna.errors import InputError
from lenna.jsonsafe import dumps

err = console(stderr=True)


def export_cmd(
    genotype: Path = typer.Argument(..., help="genotype.json written by `lenna search`."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write (.onnx)."),
    weights: Path = typer.Option(
        None,
        "--weights",
        help="Trained weights (default: the network.safetensors evaluate-arch saved beside "
        "the genotype, if any; else initial weights).",
    ),
    initial: bool = typer.Option(
        False, "--initial", help="Export initial weights even if trained ones were saved."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the initial weights (when no trained ones)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was checked as JSON."),
) -> None:
    """Export the derived network to ONNX with a dynamic batch axis.

    With the weights `lenna evaluate-arch` trained (saved beside the genotype), else initial
    ones. The file is written only after ONNX Runtime's output was checked against torch's on the
    same images (batches of 1 and 3). Needs the onnx extra (`make` installs it; else
    pip install -e '.[onnx]' in the LENNA checkout).
    """
    from lenna.deploy import export_onnx, weights_beside
    from lenna.search.genotype import Genotype

    if initial and weights is not None:
        raise InputError("--weights and --initial exclude each other")
    check_out_file(out)
    check_seed(seed)
    g = Genotype.load(genotype)
    if weights is None and not initial:
        weights = weights_beside(genotype)
    with err.status("exporting and checking under ONNX Runtime"):
        res = export_onnx(g, out, weights, seed)
    if as_json:
        typer.echo(dumps(res, indent=2))
        return
    what = (
        f"trained weights ({weights}{_how(weights)})"
        if weights
        else f"initial weights (seed {seed})"
    )
    n = res["net"]
    err.print(
        f"{out}: the derived {g.space} network ({n['cells']} cells of {n['channels']} "
        f"channels) with {what}, dynamic batch; ONNX Runtime "
        f"{res['onnxruntime']} matches torch within {res['max_rel_diff']:.1e} (relative)"
    )


def _how(weights: Path) -> str:
    """``: 5 epochs on mnist5k`` when the weights file says how it was trained."""
    from lenna.search.verify import saved_training

    t = saved_training(weights)
    if not t:
        return ""
    preset = f", preset {t['preset']}" if t.get("preset") else ""
    epochs = t.get("epochs")
    return f": {epochs} epoch{'' if epochs == 1 else 's'} on {t.get('data')}{preset}"
