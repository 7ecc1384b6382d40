"""``lenna export``: the derived network as an ONNX file, checked under ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from lenna.cli.console import console
from lenna.jsonsafe import dumps

err = console(stderr=True)


def export_cmd(
    genotype: Path = typer.Argument(..., help="genotype.json written by `lenna search`."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write (.onnx)."),
    weights: Path = typer.Option(
        None,
        "--weights",
        help="Trained weights (`lenna evaluate-arch --weights-out`); default: initialised.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights (without --weights)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was checked as JSON."),
) -> None:
    """Export the derived network to ONNX with a dynamic batch axis.

    The file is written only after ONNX Runtime's output was checked against torch's on the
    same images (batches of 1 and 3). Needs the onnx extra: pip install 'lenna[onnx]'.
    """
    from lenna.deploy import export_onnx
    from lenna.search.genotype import Genotype

    g = Genotype.load(genotype)
    with err.status("exporting and checking under ONNX Runtime"):
        res = export_onnx(g, out, weights, seed)
    if as_json:
        typer.echo(dumps(res, indent=2))
        return
    what = "trained weights" if weights else f"initial weights (seed {seed})"
    n = res["net"]
    err.print(
        f"{out}: the derived {g.space} network ({n['cells']} cells of {n['channels']} "
        f"channels) with {what}, dynamic batch; ONNX Runtime "
        f"{res['onnxruntime']} matches torch within {res['max_abs_diff']:.1e}"
    )
