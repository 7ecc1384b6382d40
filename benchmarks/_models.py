"""The benchmark scripts' model syntax: ``kind`` or ``kind:name=value,...``."""

from __future__ import annotations


def parse_model(spec: str) -> tuple[str, dict]:
    """``kind[:name=value,...]`` → kind and hyperparameters (ints, floats or strings)."""
    kind, _, params = spec.partition(":")
    hp: dict = {}
    for item in filter(None, params.split(",")):
        k, v = item.split("=")
        for cast in (int, float, str):
            try:
                hp[k] = cast(v)
                break
            except ValueError:
                continue
    return kind, hp


def folder_name(spec: str) -> str:
    """``kind[:name=value,...]`` as a folder name part (``additive-shared1``)."""
    return "".join(c if c.isalnum() or c in "+._" else "-" for c in spec.replace("=", ""))
