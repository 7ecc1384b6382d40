"""Parsing helpers for CLI option values: each bad value is one clear InputError."""

from __future__ import annotations

from lenna.errors import InputError


def parse_range(text: str, name: str = "--channels") -> tuple[int, int]:
    """``MIN:MAX`` with integers ``1 <= MIN <= MAX``."""
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"{name} must be MIN:MAX (e.g. 8:128), got {text!r}") from None
    if lo < 1 or hi < lo:
        raise InputError(f"{name} must satisfy 1 <= MIN <= MAX, got {text!r}")
    return lo, hi


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``32,16,8``."""
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise InputError(f"{name} must be positive integers, got {text!r}")
    return vals


def parse_names(text: str, name: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in vals if v not in choices]
    if not vals or bad:
        raise InputError(f"{name}: unknown {bad or text!r}; expected some of: {', '.join(choices)}")
    return vals
