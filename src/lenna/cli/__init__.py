"""The ``lenna`` command line: a thin shell over the Python API."""

from __future__ import annotations

from lenna.cli.app import app
from lenna.cli.dataset import dataset_app, plot_app
from lenna.cli.demo import demo_cmd
from lenna.cli.deploy import export_cmd
from lenna.cli.evaluate_arch import evaluate_arch_cmd
from lenna.cli.measure import measure_cmd, measure_ops_cmd
from lenna.cli.predict import evaluate_cmd, train_cmd
from lenna.cli.search import search_cmd
from lenna.cli.space import space_app
from lenna.cli.sweep import sweep_cmd

app.add_typer(space_app, name="space")
app.command("measure")(measure_cmd)
app.command("measure-ops")(measure_ops_cmd)
app.add_typer(dataset_app, name="dataset")
app.add_typer(plot_app, name="plot")
app.command("train")(train_cmd)
app.command("evaluate")(evaluate_cmd)
app.command("search")(search_cmd)
app.command("evaluate-arch")(evaluate_arch_cmd)
app.command("sweep")(sweep_cmd)
app.command("export")(export_cmd)
app.command("demo")(demo_cmd)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
