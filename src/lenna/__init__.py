"""LENNA: measure, predict and search for latency on your own hardware.

The names below load on first use: importing ``lenna`` stays cheap, so the ``lenna`` command
can answer a Ctrl-C that comes while torch is still loading (seconds) in one line.
"""

from __future__ import annotations

import importlib
from typing import Any

from lenna._version import __version__
from lenna.errors import InputError

_LAZY = {  # public name -> the module that defines it
    "Calibration": "lenna.measure",
    "Dataset": "lenna.measure",
    "measure_block": "lenna.measure",
    "load_predictor": "lenna.predict",
    "Block": "lenna.space",
    "SearchSpace": "lenna.space",
    "encode": "lenna.space",
    "get_space": "lenna.space",
    "list_spaces": "lenna.space",
    "probabilities": "lenna.space",
}

__all__ = ["InputError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        try:  # a subpackage (lenna.search, ...) that `import lenna` used to load as a side effect
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'lenna' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
