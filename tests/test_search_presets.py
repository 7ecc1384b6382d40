"""Search presets: DARTS's CIFAR-10 search, its values checked, every one overridable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from measure_helpers import one_line_error
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.search.config import SearchConfig
from lenna.search.network import NetConfig, Network
from lenna.search.presets import SEARCH_PRESETS, preset_values, with_preset
from lenna.search.run import Search
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def write_cifar(folder: Path, train: int = 24, test: int = 8) -> Path:
    """A CIFAR-10 binary folder of random images: label byte, then the R, G and B planes."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)

    def records(n: int) -> bytes:
        out = b""
        for i in range(n):
            out += bytes([i % 10]) + rng.integers(0, 256, 3 * 32 * 32, dtype=np.uint8).tobytes()
        return out

    (folder / "data_batch_1.bin").write_bytes(records(train))
    (folder / "test_batch.bin").write_bytes(records(test))
    return folder


def test_darts_cifar10_holds_the_papers_and_codes_values():
    p = preset_values("darts-cifar10")
    assert p["space"] == "darts" and p["epochs"] == 50 and p["batch"] == 64
    assert (p["w_lr"], p["w_lr_min"], p["w_momentum"], p["w_wd"]) == (0.025, 0.001, 0.9, 3e-4)
    assert p["grad_clip"] == 5.0 and (p["a_lr"], p["a_wd"]) == (3e-4, 1e-3)
    assert p["net"] == {"channels": 16, "cells": 8, "stem_stride": 1, "stem_multiplier": 3}
    assert p["limit"] is None  # the whole training set: half for w, half for α


def test_the_preset_reaches_the_network_and_the_optimisers(tmp_path):
    d = with_preset("darts-cifar10", {"data": f"cifar10:{write_cifar(tmp_path / 'c')}"})
    cfg = SearchConfig(**{**d, "net": NetConfig(**d["net"])})
    s = Search(cfg)
    assert s.cfg.net.in_channels == 3 and s.cfg.net.resolution == 32
    assert len(s.net.cells) == 8
    stem_conv = s.net.stem[0]
    assert (stem_conv.out_channels, stem_conv.stride) == (48, (1, 1))  # 3 × 16, stride 1
    assert [c.block_type for c in s.net.cells].count("reduction") == 2
    w = s.w_opt.param_groups[0]
    assert (w["lr"], w["momentum"], w["weight_decay"]) == (0.025, 0.9, 3e-4)
    assert s.sched.eta_min == 0.001 and s.sched.T_max == 50
    a = s.a_opt.param_groups[0]
    assert (a["lr"], a["betas"], a["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
    assert abs(len(s.w_idx) - len(s.a_idx)) <= 1  # half and half


def test_given_values_override_the_preset_key_by_key():
    d = with_preset("darts-cifar10", {"epochs": 2, "net": {"channels": 4}})
    assert d["epochs"] == 2 and d["batch"] == 64
    assert d["net"] == {"channels": 4, "cells": 8, "stem_stride": 1, "stem_multiplier": 3}
    assert d["preset"] == "darts-cifar10"


def test_an_unknown_preset_is_one_line(tmp_path):
    with pytest.raises(InputError, match="unknown search preset 'nasnet'"):
        preset_values("nasnet")
    with pytest.raises(InputError, match="unknown search preset"):
        SearchConfig(preset="nasnet")
    result = runner.invoke(
        app, ["search", "--out", str(tmp_path / "x"), "--preset", "nasnet", "--epochs", "1"]
    )
    one_line_error(result, "unknown search preset 'nasnet'")
    assert not (tmp_path / "x").exists()


def test_a_tiny_preset_shaped_search_runs_on_cifar_binary_files(tmp_path):
    data = write_cifar(tmp_path / "cifar")
    out = tmp_path / "run"
    args = ["search", "--out", str(out), "--preset", "darts-cifar10", "--data", f"cifar10:{data}"]
    args += ["--epochs", "1", "--channels", "2", "--cells", "3", "--batch", "8", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preset"] == "darts-cifar10" and cfg["space"] == "darts"
    assert cfg["epochs"] == 1 and cfg["batch"] == 8  # given on the command line
    assert cfg["a_lr"] == 3e-4 and cfg["w_lr_min"] == 0.001  # the preset's
    assert cfg["net"]["channels"] == 2 and cfg["net"]["stem_multiplier"] == 3
    assert cfg["net"]["in_channels"] == 3 and cfg["net"]["stem_stride"] == 1
    assert (out / "genotype.json").is_file()


def test_a_stem_multiplier_needs_a_space_that_preprocesses_its_inputs():
    with pytest.raises(InputError, match="stem multiplier must be 1"):
        Network(get_space("lenna"), NetConfig(stem_multiplier=3), "weighted")
    net = Network(get_space("darts"), NetConfig(channels=4, stem_multiplier=3), "weighted")
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 10)


def test_a_network_saved_before_stem_multipliers_loads_with_one():
    old = NetConfig().to_dict()
    del old["stem_multiplier"]
    assert NetConfig.from_dict(old).stem_multiplier == 1


def test_every_preset_builds_a_valid_config():
    for name in SEARCH_PRESETS:
        d = with_preset(name, {})
        SearchConfig(**{**d, "net": NetConfig(**d["net"])})


def test_crop_flip_crops_a_padded_image_and_flips_it():
    from lenna.search.augment import crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output is one window of the padded image, maybe mirrored
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[i], w) or torch.equal(y[i], w.flip(-1)) for w in windows)
    again = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(y, again)  # the generator decides: a resumed search draws the same


@pytest.mark.slow
def test_a_bf16_step_runs_and_keeps_alpha_in_float32(tmp_path):
    from search_helpers import run, tiny_config, tiny_data

    cfg = tiny_config(epochs=1, amp="bf16", augment=True, space="darts")
    s = Search(cfg, tiny_data())
    assert s.amp is torch.bfloat16
    before = s.net.alphas["normal"].detach().clone()
    row = s.run_epoch()
    assert s.net.alphas["normal"].dtype == torch.float32
    assert not torch.equal(before, s.net.alphas["normal"])  # α moved
    assert np.isfinite(row["w_loss"]) and np.isfinite(row["a_loss"])
    run(cfg, tmp_path / "r")
    assert json.loads((tmp_path / "r" / "config.json").read_text())["amp"] == "bf16"


def test_amp_auto_is_off_on_a_cpu():
    from lenna.search.config import amp_dtype

    assert amp_dtype("auto", torch.device("cpu")) is None
    assert amp_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(InputError, match="unknown amp"):
        SearchConfig(amp="fp8")


def test_the_preset_augments_unless_told_not_to():
    assert with_preset("darts-cifar10", {})["augment"] is True
    assert with_preset("darts-cifar10", {"augment": False})["augment"] is False
