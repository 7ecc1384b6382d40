"""Parsing helpers for CLI option values: each bad value is one clear InputError."""

from __future__ import annotations

import os
from pathlib import Path

from lenna.atomic import missing_folder
from lenna.errors import InputError
from lenna.limits import MAX_SEED


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
    return _once(vals, name)


def parse_names(text: str, name: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in vals if v not in choices]
    if not vals or bad:
        raise InputError(f"{name}: unknown {bad or text!r}; expected some of: {', '.join(choices)}")
    return _once(vals, name)


def _once(vals: tuple, name: str) -> tuple:
    """``vals`` with no value twice: a repeated resolution or block type would be drawn twice
    as often, silently, and a file's stored settings would say so forever."""
    twice = sorted({v for v in vals if vals.count(v) > 1}, key=vals.index)
    if twice:
        raise InputError(
            f"{name} lists {twice[0]} twice (to resume a file measured so, leave {name} out: "
            "a resume takes the file's own)"
        )
    return vals


def check_seed(seed: int | None, name: str = "--seed") -> int | None:
    """A seed every consumer accepts: numpy refuses negative ones, torch and LightGBM large
    ones, each with a traceback of its own."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed}")
    return seed


def check_out_file(path: Path, name: str = "--out") -> Path:
    """An output file's path, checked before any work: not a folder, in a folder that exists
    and can be written (else the work is done, then lost)."""
    if path.is_dir():
        raise InputError(f"{name} {path} is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{name} {path}: {missing_folder(parent)}")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{name} {path}: folder {parent} is not writable")
    return path
