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
