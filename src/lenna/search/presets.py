"""Named search presets: the shapes and recipes of published searches, every value overridable.

``darts-cifar10`` is the first-order DARTS search on CIFAR-10 (Liu et al., "DARTS:
Differentiable Architecture Search", ICLR 2019, appendix A.1.1, and the authors' code,
``quark0/darts``, ``cnn/train_search.py`` and ``cnn/model_search.py``):

- a network of 8 cells, 16 initial channels, a stride-1 stem of 3 × 16 channels (the code's
  ``stem_multiplier=3``), reductions at 1/3 and 2/3 of the depth;
- half of the training set trains the weights, the other half α (``train_portion=0.5``);
- batch 64, 50 epochs;
- weights: SGD, lr 0.025 cosine-annealed to 0.001 (the paper says "to zero"; the code's
  ``learning_rate_min`` is 0.001), momentum 0.9, weight decay 3e-4, gradients clipped at 5;
- α: Adam, lr 3e-4, betas (0.5, 0.999) (LENNA's α optimiser always uses them), weight
  decay 1e-3;
- both halves augmented as ``train_search.py`` does: a random crop of the image padded by 4,
  and a random horizontal flip (done on the device here).

Only the search is preset: the data set is the user's (``--data cifar10:DIR``), and the
evaluation recipe (20 cells of 36 channels, cutout, drop-path, auxiliary head, 600 epochs) is
not built yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from lenna.errors import InputError

SEARCH_PRESETS: dict[str, dict] = {
    "darts-cifar10": {
        "space": "darts",
        "limit": None,
        "epochs": 50,
        "warmup": 0,
        "batch": 64,
        "mode": "weighted",
        "w_lr": 0.025,
        "w_lr_min": 0.001,
        "w_momentum": 0.9,
        "w_wd": 3e-4,
        "grad_clip": 5.0,
        "a_lr": 3e-4,
        "a_wd": 1e-3,
        "augment": True,  # train_search.py's transform: random crop (padding 4) and flip
        "net": {"channels": 16, "cells": 8, "stem_stride": 1, "stem_multiplier": 3},
    },
}


def preset_values(name: str) -> dict:
    """The settings of preset ``name`` (a copy), or one line naming the presets."""
    if name not in SEARCH_PRESETS:
        raise InputError(f"unknown preset {name!r}; expected one of: {', '.join(SEARCH_PRESETS)}")
    values = dict(SEARCH_PRESETS[name])
    values["net"] = dict(values["net"])
    return values


def with_preset(name: str | None, given: Mapping) -> dict:
    """Search settings: ``given`` (what the user set) over the preset's, as a config dict
    (``net`` merged key by key)."""
    if name is None:
        return dict(given)
    values = preset_values(name)
    net = {**values.pop("net"), **dict(given.get("net") or {})}
    return {**values, **{k: v for k, v in given.items() if k != "net"}, "net": net, "preset": name}
