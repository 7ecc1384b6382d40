"""Named presets: the shapes and recipes of published searches and evaluations, every value
overridable.

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

Where LENNA's search differs from that code: ``model_search.py``'s batch norms have no
learnable affine (``affine=False``) and follow every pooling candidate; LENNA's supernet uses
the op modules of the derived cells it measures (learnable batch norms, none after a pool).

``darts-cifar10-eval`` is DARTS's training of the derived network on CIFAR-10, for
``lenna evaluate-arch`` (paper appendix A.2.1, "Other hyperparameters remain the same as the
ones used for architecture search"; code ``cnn/train.py``, ``cnn/model.py``, ``cnn/utils.py``):

- 20 cells, 36 initial channels (paper and ``--layers 20 --init_channels 36``); the stem of
  ``NetworkCIFAR``: stride 1, 3 × 36 channels (``stem_multiplier = 3``);
- batch 96, 600 epochs (paper and code);
- SGD, lr 0.025, momentum 0.9, weight decay 3e-4 (as the search: paper; code defaults);
  cosine-annealed to 0 (paper: "annealed down to zero"; code:
  ``CosineAnnealingLR(optimizer, epochs)``, whose floor is 0); gradients clipped at 5 (code
  only: ``--grad_clip 5``; the paper does not say);
- random crop (padding 4) and horizontal flip (code, ``_data_transforms_cifar10``), then cutout
  of a 16-pixel square (paper: cutout; the length is the code's ``--cutout_length 16``);
- drop-path ("path dropout") of probability 0.2 (paper and ``--drop_path_prob 0.2``), scaled
  linearly from 0 with the epoch (code: ``drop_path_prob * epoch / epochs``), never on
  identity edges (``model.py``);
- an auxiliary head on the output of cell ``2 * cells // 3`` with loss weight 0.4 (paper:
  "auxiliary towers with weight 0.4"; code: ``--auxiliary_weight 0.4``, ``model.py``).

Where LENNA differs from that code: ``train.py`` steps its scheduler before each epoch (an old
PyTorch idiom), so its epoch *e* trains at the cosine's value for *e* + 1; here at *e*.

Each preset fixes the recipe, not the data: that is the user's (``--data cifar10:DIR``).
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

EVAL_PRESETS: dict[str, dict] = {
    "darts-cifar10-eval": {
        "epochs": 600,
        "batch": 96,
        "lr": 0.025,
        "lr_min": 0.0,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "grad_clip": 5.0,
        "augment": True,
        "cutout": 16,
        "drop_path": 0.2,
        "aux_weight": 0.4,
        "net": {"channels": 36, "cells": 20, "stem_stride": 1, "stem_multiplier": 3},
    },
}


def _lookup(name: str, table: dict[str, dict], kind: str, other: dict[str, dict]) -> dict:
    """A copy of ``table[name]``, or one line naming the presets (and the command that takes
    ``name`` when it is a preset of the other kind)."""
    if name not in table:
        hint = ""
        if name in other:
            where = "lenna evaluate-arch" if other is EVAL_PRESETS else "lenna search"
            hint = f" ({name!r} is a preset of `{where}`)"
        raise InputError(
            f"unknown {kind} preset {name!r}; expected one of: {', '.join(table)}{hint}"
        )
    values = dict(table[name])
    values["net"] = dict(values["net"])
    return values


def _merged(values: dict, name: str, given: Mapping) -> dict:
    net = {**values.pop("net"), **dict(given.get("net") or {})}
    return {**values, **{k: v for k, v in given.items() if k != "net"}, "net": net, "preset": name}


def preset_values(name: str) -> dict:
    """The settings of search preset ``name`` (a copy), or one line naming the presets."""
    return _lookup(name, SEARCH_PRESETS, "search", EVAL_PRESETS)


def with_preset(name: str | None, given: Mapping) -> dict:
    """Search settings: ``given`` (what the user set) over the preset's, as a config dict
    (``net`` merged key by key)."""
    if name is None:
        return dict(given)
    return _merged(preset_values(name), name, given)


def eval_preset_values(name: str) -> dict:
    """The training recipe of evaluation preset ``name`` (a copy), or one line naming them."""
    return _lookup(name, EVAL_PRESETS, "evaluation", SEARCH_PRESETS)


def with_eval_preset(name: str | None, given: Mapping) -> dict:
    """A training recipe: ``given`` over the evaluation preset's (``net`` merged key by key)."""
    if name is None:
        return dict(given)
    return _merged(eval_preset_values(name), name, given)
