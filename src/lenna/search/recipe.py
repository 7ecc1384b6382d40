"""How a derived network is trained from scratch (``evaluate-arch``, a sweep's evaluation).

One frozen record of every setting, so the result can say exactly how its accuracy was
reached. The defaults are the training ``evaluate-arch`` always did (SGD + cosine, DARTS's
optimiser settings, no augmentation); a preset (``--preset darts-cifar10-eval``) turns on
DARTS's evaluation recipe. A recipe stored before a setting existed loads with that setting
off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from lenna.errors import InputError
from lenna.search.config import AMP_CHOICES
from lenna.search.presets import eval_preset_values, with_eval_preset

NET_KEYS = ("channels", "cells", "stem_stride", "stem_multiplier")  # what a recipe may resize


@dataclass(frozen=True)
class TrainRecipe:
    """Training settings of a derived network; ``net`` overrides the genotype's shape."""

    epochs: int = 5
    batch: int = 64
    lr: float = 0.025
    lr_min: float | None = None  # the cosine's floor; None: lr / 25, whatever lr is
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    augment: bool = False  # random crop (padding 4) and flip of every batch, on the device
    cutout: int = 0  # side of the square cut out of every training image; 0: off
    drop_path: float = 0.0  # drop-path probability at the last epoch (linear from 0); 0: off
    aux_weight: float = 0.0  # weight of the auxiliary head's loss; 0: no head
    amp: str = "auto"  # "off", "bf16", or "auto": bf16 on a GPU that has it, else off
    channels_last: bool = False  # network and batches in torch.channels_last
    cuda_graph: bool = False  # on a GPU, each epoch's step replayed as a CUDA graph (opt-in)
    net: dict = field(default_factory=dict)  # e.g. {"cells": 20, "channels": 36}
    preset: str | None = None  # the evaluation preset the values started from

    def __post_init__(self) -> None:
        _integer("epochs", self.epochs, 0)
        _integer("batch", self.batch, 1)
        _integer("cutout", self.cutout, 0, "(the side of a square, in pixels)")
        for name in ("lr", "grad_clip"):
            _number(name, getattr(self, name), 0, False)
        for name in ("weight_decay", "aux_weight"):
            _number(name, getattr(self, name), 0, True)
        if self.lr_min is not None:
            _number("lr_min", self.lr_min, 0, True)
        if self.lr_min is not None and self.lr_min > self.lr:
            raise InputError(f"lr_min must be <= lr ({self.lr}), got {self.lr_min}")
        for name in ("momentum", "drop_path"):
            v = getattr(self, name)
            _number(name, v, 0, True)
            if v >= 1:
                raise InputError(f"{name} must be in [0, 1), got {v}")
        if self.amp not in AMP_CHOICES:
            raise InputError(f"unknown amp {self.amp!r}; expected one of: {', '.join(AMP_CHOICES)}")
        unknown = set(self.net) - set(NET_KEYS)
        if unknown:
            raise InputError(f"a recipe resizes {', '.join(NET_KEYS)} only, got {sorted(unknown)}")
        if self.preset is not None:
            eval_preset_values(self.preset)  # an unknown name: one line

    @property
    def lr_floor(self) -> float:
        """Where the cosine ends: ``lr_min``, or ``lr / 25`` when not set."""
        return self.lr / 25 if self.lr_min is None else self.lr_min

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainRecipe:
        """A stored recipe; settings it lacks (stored before they existed) are off."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown training recipe keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def of(cls, preset: str | None, given: dict) -> TrainRecipe:
        """``given`` (the settings the user typed) over ``preset``'s, over the defaults."""
        return cls(**with_eval_preset(preset, given))


def _integer(name: str, v: object, low: int, what: str = "") -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise InputError(f"{name} must be an integer >= {low}{' ' + what if what else ''}, got {v}")


def _number(name: str, v: object, low: float, closed: bool) -> None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < low or (v == low and not closed):
        raise InputError(f"{name} must be a number {'>=' if closed else '>'} {low}, got {v}")
