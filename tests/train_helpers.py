"""Helpers for the training tests: a derived DARTS genotype with both kinds of edges, and
CIFAR binary folders of random images (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.space import get_space


def mixed_genotype(**net) -> Genotype:
    """A ``darts`` genotype whose nodes read input 0 through ``sep_conv_3x3`` and input 1
    through ``skip_connect`` (an identity in a normal cell), for colour 32×32 images."""
    sp = get_space("darts")
    ops = [
        ("sep_conv_3x3" if e.src == 0 else "skip_connect") if e.src < 2 else None for e in sp.edges
    ]
    shape = {"channels": 4, "cells": 3, "in_channels": 3, "num_classes": 10, "stem_stride": 1}
    return Genotype(
        "darts", {"normal": ops, "reduction": list(ops)}, NetConfig(**{**shape, **net}), 0.0
    )


def cifar_records(n: int, label_bytes: int, classes: int, seed: int = 0) -> bytes:
    """``n`` records: ``label_bytes`` label bytes (the last one ``i % classes``), then the
    R, G and B planes of a random image."""
    rng = np.random.default_rng(seed)
    out = b""
    for i in range(n):
        labels = [(i * 7) % 20] * (label_bytes - 1) + [i % classes]
        out += bytes(labels) + rng.integers(0, 256, 3 * 32 * 32, dtype=np.uint8).tobytes()
    return out


def write_cifar10(folder: Path, train: int = 24, test: int = 8) -> Path:
    """A CIFAR-10 binary folder: ``data_batch_1.bin`` and ``test_batch.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_batch_1.bin").write_bytes(cifar_records(train, 1, 10))
    (folder / "test_batch.bin").write_bytes(cifar_records(test, 1, 10, seed=1))
    return folder
