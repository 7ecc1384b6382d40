"""``lenna space``: inspect the search spaces."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from lenna.cli.console import console
from lenna.space import get_space, list_spaces

space_app = typer.Typer(
    help="Inspect the search spaces (blocks, edges, candidate ops).", no_args_is_help=True
)


def space_summary(name: str) -> dict:
    """The JSON contract of ``lenna space show --json``."""
    sp = get_space(name)
    return {
        "name": sp.name,
        "description": sp.description,
        "num_inputs": sp.num_inputs,
        "num_nodes": sp.num_nodes,
        "num_edges": sp.num_edges,
        "ops": {"normal": list(sp.ops), "downsampling": list(sp.down_ops)},
        "num_features": sp.num_features,
        "feature_layout": "is_normal, channels, num_edges x max_ops softmax(alpha), resolution",
        "output": sp.output,
        "definition_hash": sp.definition_hash(),
    }


@space_app.command("list")
def list_cmd() -> None:
    """List the available search spaces."""
    table = Table("name", "edges", "ops (normal/down)", "features", "description")
    for name in list_spaces():
        sp = get_space(name)
        ops = f"{len(sp.ops)}/{len(sp.down_ops)}"
        table.add_row(name, str(sp.num_edges), ops, str(sp.num_features), sp.description)
    console().print(table)


@space_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="Space name, e.g. lenna or darts."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show a space: its edges, candidate ops per edge kind and feature count."""
    info = space_summary(name)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    out = console()
    out.print(f"[bold]{info['name']}[/bold]: {info['description']}")
    out.print(
        f"inputs {info['num_inputs']}, nodes {info['num_nodes']}, edges {info['num_edges']}, "
        f"output {info['output']}, features {info['num_features']} ({info['feature_layout']})"
    )
    out.print("ops on normal edges:       " + ", ".join(info["ops"]["normal"]))
    out.print("ops on downsampling edges: " + ", ".join(info["ops"]["downsampling"]))
