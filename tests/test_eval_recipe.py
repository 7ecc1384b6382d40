"""The evaluation preset (DARTS's CIFAR-10 training of a derived network): its values, that
they reach the network, the optimiser and the training, overrides, bad input, and a tiny
evaluate-arch run with it on CIFAR binary files written here."""

from __future__ import annotations

import json

import pytest
import torch
from measure_helpers import all_text, one_line_error
from search_helpers import FAST_RULE, cheap_genotype, tiny_data
from train_helpers import mixed_genotype, write_cifar10
from typer.testing import CliRunner

import lenna.cli.evaluate_arch as cli_evaluate_arch
import lenna.search.train as train_mod
import lenna.search.verify as verify
from lenna.cli import app
from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.search.auxiliary import Auxiliary, auxiliary_index
from lenna.search.drop_path import DropPath
from lenna.search.presets import EVAL_PRESETS, eval_preset_values
from lenna.search.recipe import TrainRecipe
from lenna.search.train import optimiser, train_network
from lenna.search.verify import build, trained_shape

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
PRESET = "darts-cifar10-eval"


@pytest.fixture
def fast_measure(monkeypatch):
    """evaluate-arch measures with the quick rule on one thread (the default rule takes
    seconds for the preset's 32×32 cells)."""
    monkeypatch.setattr(cli_evaluate_arch, "measure_config_for", lambda *a, **k: _fast())


def test_the_preset_holds_the_papers_and_codes_values():
    r = TrainRecipe.of(PRESET, {})
    assert (r.epochs, r.batch) == (600, 96)
    assert (r.lr, r.lr_min, r.momentum, r.weight_decay, r.grad_clip) == (0.025, 0.0, 0.9, 3e-4, 5.0)
    assert r.augment and (r.cutout, r.drop_path, r.aux_weight) == (16, 0.2, 0.4)
    assert r.net == {"channels": 36, "cells": 20, "stem_stride": 1, "stem_multiplier": 3}
    assert r.preset == PRESET and not r.channels_last


def test_the_preset_shapes_the_network_as_darts_evaluates_it():
    shape = trained_shape(mixed_genotype(), TrainRecipe.of(PRESET, {}))
    assert (shape.cells, shape.channels, shape.stem_stride, shape.stem_multiplier) == (20, 36, 1, 3)
    net = build(mixed_genotype(), 96, shape)
    assert net.stem[0].out_channels == 108 and net.stem[0].stride == (1, 1)
    reductions = [i for i, s in enumerate(net.specs) if s.block_type == "reduction"]
    assert reductions == [6, 13] and auxiliary_index(20) == 13  # DARTS: layers//3, 2*layers//3
    aux = Auxiliary(net)
    assert aux.head.features[2].in_channels == 4 * 144  # 4 nodes of 4 × 36, as C_to_auxiliary
    assert aux.head.features[5].kernel_size == (2, 2)  # 8×8, pooled 5/3 → 2×2, as DARTS's


def test_the_preset_reaches_the_optimiser():
    r = TrainRecipe.of(PRESET, {})
    opt, sched = optimiser([torch.nn.Parameter(torch.zeros(2))], r)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.025, 0.9, 3e-4)
    assert (sched.T_max, sched.eta_min) == (600, 0.0)


def test_the_preset_reaches_the_training(monkeypatch):
    """Two epochs at a reduced size: crop/flip and cutout of 16 on every batch, drop-path
    0 then 0.1 (0.2 × epoch / epochs), the auxiliary head on every step with weight 0.4."""
    seen: dict[str, list] = {"cutout": [], "crop": 0, "drop": [], "aux": 0, "clip": []}
    cutout, crop_flip, clip = train_mod.cutout, train_mod.crop_flip, train_mod.nn.utils
    monkeypatch.setattr(
        train_mod, "cutout", lambda x, g, n: seen["cutout"].append(n) or cutout(x, g, n)
    )

    def crop(x, g):
        seen["crop"] += 1
        return crop_flip(x, g)

    class Drop(DropPath):
        def _drop(self, module, inputs, out):
            seen["drop"].append(self.prob)
            return super()._drop(module, inputs, out)

    class Aux(Auxiliary):
        def logits(self):
            seen["aux"] += 1
            return super().logits()

    monkeypatch.setattr(train_mod, "crop_flip", crop)
    monkeypatch.setattr(train_mod, "DropPath", Drop)
    monkeypatch.setattr(train_mod, "Auxiliary", Aux)
    real_clip = clip.clip_grad_norm_
    monkeypatch.setattr(
        clip, "clip_grad_norm_", lambda p, c: seen["clip"].append(c) or real_clip(p, c)
    )
    recipe = TrainRecipe.of(PRESET, {"epochs": 2, "batch": 8, "net": {"channels": 2, "cells": 3}})
    g = mixed_genotype()
    net = build(g, 8, trained_shape(g, recipe))
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    data = verify.ImageData("c", x, y, x[:4], y[:4], 10)
    train_network(net, data, recipe=recipe)
    steps = 2 * 2
    assert seen["crop"] == steps and seen["cutout"] == [16] * steps
    assert seen["aux"] == steps and seen["clip"] == [5.0] * steps
    assert set(seen["drop"]) == {0.0, 0.1}


def test_given_values_override_the_preset():
    r = TrainRecipe.of(PRESET, {"epochs": 3, "cutout": 0, "net": {"cells": 5}})
    assert (r.epochs, r.cutout, r.batch, r.drop_path) == (3, 0, 96, 0.2)
    assert r.net == {"channels": 36, "cells": 5, "stem_stride": 1, "stem_multiplier": 3}


def test_without_a_preset_the_recipe_is_the_old_training():
    r = TrainRecipe()
    assert (r.epochs, r.batch, r.lr, r.lr_floor) == (5, 64, 0.025, 0.025 / 25)
    assert not r.augment and (r.cutout, r.drop_path, r.aux_weight, r.net) == (0, 0.0, 0.0, {})


def test_a_recipe_stored_before_a_setting_existed_loads_with_it_off():
    r = TrainRecipe.from_dict({"epochs": 3, "batch": 16, "lr": 0.05})
    assert (r.cutout, r.drop_path, r.aux_weight, r.channels_last) == (0, 0.0, 0.0, False)
    assert TrainRecipe.from_dict(r.to_dict()) == r
    with pytest.raises(InputError, match="unknown training recipe keys"):
        TrainRecipe.from_dict({"warp": 9})


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"cutout": -1}, "cutout must be an integer >= 0"),
        ({"cutout": 2.5}, "cutout must be an integer >= 0"),
        ({"drop_path": 1.0}, "drop_path must be in [0, 1)"),
        ({"drop_path": -0.1}, "drop_path must be a number >= 0"),
        ({"aux_weight": float("nan")}, "aux_weight must be a number >= 0"),
        ({"lr": 0}, "lr must be a number > 0"),
        ({"lr_min": 1.0}, "lr_min must be <= lr"),
        ({"momentum": 1.5}, "momentum must be in [0, 1)"),
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"amp": "fp8"}, "unknown amp 'fp8'"),
        ({"net": {"depth": 3}}, "a recipe resizes channels, cells"),
    ],
)
def test_bad_values_are_one_clear_error(given, needle):
    with pytest.raises(InputError) as e:
        TrainRecipe(**given)
    assert needle in str(e.value)


def test_unknown_presets_name_the_choices_and_the_other_command():
    with pytest.raises(InputError, match="unknown evaluation preset 'nasnet'; expected one of"):
        eval_preset_values("nasnet")
    with pytest.raises(InputError, match="'darts-cifar10' is a preset of `lenna search`"):
        TrainRecipe.of("darts-cifar10", {})
    assert set(EVAL_PRESETS) == {PRESET}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--preset", "nasnet"], "unknown evaluation preset 'nasnet'"),
        (["--preset", "darts-cifar10"], "is a preset of `lenna search`"),
        (["--cutout", "-2"], "cutout must be an integer >= 0"),
        (["--drop-path", "1.5"], "drop_path must be in [0, 1)"),
        (["--aux-weight", "-1"], "aux_weight must be a number >= 0"),
        (["--amp", "fp8"], "unknown amp 'fp8'"),
        (["--cells", "0"], "network cells must be >= 1"),
    ],
)
def test_evaluate_arch_refuses_bad_recipes_in_one_line(tmp_path, extra, needle):
    g = cheap_genotype("darts").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "0", *extra]
    one_line_error(runner.invoke(app, args), needle)


def test_the_preset_on_a_space_without_preprocessing_is_one_line(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--preset", PRESET, "--epochs", "0"]
    one_line_error(runner.invoke(app, args), "stem multiplier must be 1")


def test_a_tiny_evaluate_arch_with_the_preset_on_cifar_binary_files(tmp_path, fast_measure):
    data = write_cifar10(tmp_path / "cifar", train=16, test=8)
    g = mixed_genotype(channels=4, cells=3, stem_stride=2)
    g.predicted_ms, g.predicted_cells_ms = 0.5, [0.1, 0.2, 0.2]  # of the searched shape
    path = g.save(tmp_path / "genotype.json")
    weights = tmp_path / "w.safetensors"
    args = ["evaluate-arch", str(path), "--preset", PRESET, "--data", f"cifar10:{data}"]
    args += ["--epochs", "1", "--channels", "2", "--cells", "3", "--batch", "8", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--json", "--weights-out", str(weights)])
    assert result.exit_code == 0, all_text(result)
    res = json.loads(result.stdout[result.stdout.index("{") :])
    train = res["train"]
    assert train["preset"] == PRESET and (train["epochs"], train["batch"]) == (1, 8)  # given
    assert (train["cutout"], train["drop_path"], train["aux_weight"]) == (16, 0.2, 0.4)
    assert train["lr_min"] == 0.0 and train["augment"] is True  # the preset's
    assert res["net"]["cells"] == 3 and res["net"]["channels"] == 2
    assert res["net"]["stem_multiplier"] == 3 and res["net"]["stem_stride"] == 1
    assert res["predicted_ms"] is None and res["prediction_error"] is None  # another shape
    assert 0.0 <= res["accuracy"] <= 1.0 and res["epochs"] == 1
    plain = build(g, 8, trained_shape(g, TrainRecipe(**{k: v for k, v in train.items()})))
    assert res["params"] == sum(p.numel() for p in plain.parameters())  # no auxiliary head
    from safetensors.torch import load_file

    assert set(load_file(str(weights))) == set(plain.state_dict())  # the plain network's


def _training_before_recipes(net, data, epochs, seed, batch=8, lr=0.025):
    """The training loop as it was before recipes existed (commit 7f281fa), as a reference."""
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters") and m is not net:
            m.reset_parameters()
    opt = torch.optim.SGD(net.parameters(), lr, momentum=0.9, weight_decay=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs), eta_min=lr / 25)
    g = torch.Generator().manual_seed(seed)
    n, losses = len(data.y_train), []
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, generator=g)
        total, seen = 0.0, 0
        for i in range(0, n - batch + 1 if n >= batch else 1, batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        sched.step()
        losses.append(total / seen)
    return losses, train_mod.test_accuracy(net, data)


def test_training_without_a_preset_is_the_training_before_recipes():
    """Same seed, same losses and accuracy as the loop before recipes existed."""
    g, data = cheap_genotype("darts"), tiny_data()
    ref_losses, ref_acc = _training_before_recipes(build(g, 8), data, epochs=2, seed=3)
    losses = []
    got = train_network(
        build(g, 8), data, None, 3, lambda ep, loss, acc: losses.append(loss),
        TrainRecipe(epochs=2, batch=8),
    )  # fmt: skip
    assert losses == ref_losses and got["accuracy"] == ref_acc
    res = verify.evaluate_arch(g, data, epochs=1, seed=3, measure=_fast(), device="cpu")
    assert res["train"] == TrainRecipe(epochs=1).to_dict() and res["net"] == g.net.to_dict()
    assert res["amp_used"] == "off"  # float32 on a CPU


def test_evaluate_arch_trains_a_recipes_epochs_unless_told_otherwise(monkeypatch):
    seen = []
    monkeypatch.setattr(verify, "train_network", lambda *a: seen.append(a[-1].epochs) or {
        "accuracy": 0.5, "train_s": 0.0})  # fmt: skip
    g = cheap_genotype("darts")
    verify.evaluate_arch(g, tiny_data(), recipe=TrainRecipe(epochs=3, batch=8), measure=_fast())
    verify.evaluate_arch(g, tiny_data(), measure=_fast())
    verify.evaluate_arch(g, tiny_data(), 2, recipe=TrainRecipe(epochs=3, batch=8), measure=_fast())
    assert seen == [3, 5, 2]  # the recipe's, the default recipe's, then the override


def test_a_resized_network_is_not_judged_against_the_searched_budget(monkeypatch):
    g = cheap_genotype("darts")
    g.budget_ms = 1e9  # any network would be "within" it
    recipe = TrainRecipe(epochs=0, net={"cells": g.net.cells + 1})
    res = verify.evaluate_arch(g, tiny_data(), recipe=recipe, measure=_fast())
    assert res["within_budget"] is None and res["predicted_ms"] is None
    assert res["predicted_per_cell_ms"] is None
    same = verify.evaluate_arch(g, tiny_data(), recipe=TrainRecipe(epochs=0), measure=_fast())
    assert same["within_budget"] is True


def test_the_cosine_floor_follows_the_learning_rate_unless_set():
    assert TrainRecipe(lr=0.0005).lr_floor == 0.0005 / 25  # no floor above the lr to refuse
    assert TrainRecipe(lr=0.1, lr_min=0.01).lr_floor == 0.01
    assert TrainRecipe.of("darts-cifar10-eval", {}).lr_floor == 0.0


def _fast() -> MeasureConfig:
    return MeasureConfig(rule="ci", rule_params=dict(FAST_RULE), threads=1)
