"""CIFAR-10 and CIFAR-100 in their binary versions, read without unpickling anything.

CIFAR-10's records are 1 label byte then the 32×32 R, G and B planes (``data_batch_N.bin``,
``test_batch.bin``); CIFAR-100's are a coarse label byte, a fine label byte, then the same
planes (``train.bin``, ``test.bin``). The fine labels (100 classes) are the ones used: they are
the CIFAR-100 benchmark's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lenna.errors import InputError

_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

_PIXELS = 3 * 32 * 32
_TRAIN_BATCH = re.compile(r"data_batch_(\d+)\.bin")


def cifar10(folder: str, seed: int) -> _Arrays:
    """CIFAR-10's binary batches from ``folder``; train shuffled, test kept in file order."""
    root = _root(folder, "cifar10", "cifar-10-batches-bin", "test_batch.bin")
    train_files = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_file() and (m := _TRAIN_BATCH.fullmatch(p.name))
    )
    test_file = root / "test_batch.bin"
    if not test_file.is_file() or not train_files:
        raise InputError(
            f"cifar10 folder {root} must hold test_batch.bin and at least one "
            "data_batch_N.bin (the CIFAR-10 binary version)"
        )
    parts = [_read(p, "cifar10", 1, 10) for _, p in train_files]
    x_tr = np.concatenate([x for x, _ in parts])
    y_tr = np.concatenate([y for _, y in parts])
    return _shuffled(x_tr, y_tr, _read(test_file, "cifar10", 1, 10), seed)


def cifar100(folder: str, seed: int) -> _Arrays:
    """CIFAR-100's ``train.bin`` and ``test.bin`` from ``folder``, fine labels; train shuffled,
    test kept in file order."""
    root = _root(folder, "cifar100", "cifar-100-binary", "test.bin")
    train, test = root / "train.bin", root / "test.bin"
    if not (train.is_file() and test.is_file()):
        raise InputError(
            f"cifar100 folder {root} must hold train.bin and test.bin "
            "(the CIFAR-100 binary version)"
        )
    x_tr, y_tr = _read(train, "cifar100", 2, 100)
    return _shuffled(x_tr, y_tr, _read(test, "cifar100", 2, 100), seed)


def _root(folder: str, name: str, subdir: str, marker: str) -> Path:
    """The folder, or the tarball's subfolder inside it when that is where the files are."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{name} folder not found: {root}")
    if not (root / marker).is_file() and (root / subdir).is_dir():
        root = root / subdir
    return root


def _read(path: Path, name: str, label_bytes: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode records of ``label_bytes`` label bytes (the last one is the label used) then
    32×32 R, G and B planes, row-major."""
    record = label_bytes + _PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise InputError(f"{name} file {path} is empty")
    if raw.size % record:
        raise InputError(
            f"{name} file {path} has {raw.size} bytes, not a multiple of the "
            f"{record}-byte record; is it the binary version?"
        )
    records = raw.reshape(-1, record)
    labels = records[:, label_bytes - 1].astype(np.int64)
    if labels.max() >= classes:
        bad = int(np.argmax(labels >= classes))
        raise InputError(
            f"{name} file {path}: record {bad} has label {labels[bad]}, expected 0..{classes - 1}"
        )
    return records[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _shuffled(
    x_tr: np.ndarray, y_tr: np.ndarray, test: tuple[np.ndarray, np.ndarray], seed: int
) -> _Arrays:
    order = np.random.default_rng(seed).permutation(len(y_tr))
    x_te, y_te = test
    return _to_unit(x_tr[order]), y_tr[order], _to_unit(x_te), y_te


def _to_unit(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return x.astype(np.float32) / np.float32(255.0)
