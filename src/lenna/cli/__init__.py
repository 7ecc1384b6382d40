"""The ``lenna`` command line: a thin shell over the Python API."""

from __future__ import annotations

from lenna.cli.app import app
from lenna.cli.space import space_app

app.add_typer(space_app, name="space")


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
