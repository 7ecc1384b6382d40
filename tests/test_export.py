"""`lenna export`: the derived network as ONNX, checked under ONNX Runtime (issue 27, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from measure_helpers import all_text, one_line_error, without_onnxruntime
from safetensors.torch import load_file, save_file
from search_helpers import cheap_genotype
from typer.testing import CliRunner

from lenna.cli import app
from lenna.deploy import load_weights
from lenna.errors import InputError
from lenna.search.folder import NETWORK_WEIGHTS
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.verify import build, save_state
from lenna.space import get_space

ort = pytest.importorskip(
    "onnxruntime", reason="the onnx extra: pip install -e '.[onnx]' in the LENNA checkout"
)
pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def every_op_genotype(space: str, offset: int = 0) -> Genotype:
    """Derivable cells that cycle through the candidate ops of each edge kind from ``offset``
    (two such networks, offsets 0 and 5, use every op of either space)."""
    sp = get_space(space)
    cells = {}
    for bt in ("normal", "reduction"):
        ops: list[str | None] = []
        seen: dict[tuple[str, ...], int] = {}  # per op list (edge kind): the next op to use
        for e in sp.edges:
            names = tuple(n for n in sp.edge_ops(bt, e) if n != "none")
            earlier = sum(1 for o in sp.edges if o.dst == e.dst and o.index < e.index)
            keep = space == "lenna" or earlier < 2  # darts: the first two inputs of each node
            i = seen.get(names, offset)
            ops.append(names[i % len(names)] if keep else None)
            seen[names] = i + keep
        cells[bt] = ops
    return Genotype(space, cells, NetConfig(channels=8, cells=3, num_classes=4), 0.0)


@pytest.mark.slow  # four exports: `make test-slow`
@pytest.mark.parametrize("space", ["lenna", "darts"])
def test_the_export_computes_what_torch_computes_for_every_op(tmp_path, space):
    from lenna.deploy import export_onnx

    sp = get_space(space)
    every = {op for bt in ("normal", "reduction") for e in sp.edges for op in sp.edge_ops(bt, e)}
    used = set()
    for offset in (0, 5):
        g = every_op_genotype(space, offset)
        used |= {op for c in g.cells.values() for op in c if op is not None}
        out = tmp_path / f"net{offset}.onnx"
        res = export_onnx(g, out)
        assert out.is_file() and res["max_rel_diff"] <= 1e-4 and res["batches"] == [1, 3]
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
        (logits,) = session.run(None, {"images": x})  # any batch: the axis is dynamic
        assert logits.shape == (5, 4)
    assert used == every - {"none"}  # the check covered every candidate op


@pytest.mark.slow
def test_trained_weights_are_what_is_exported(tmp_path):
    from lenna.deploy import export_onnx

    g = cheap_genotype("lenna")
    torch.manual_seed(3)
    net = build(g)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # not the initial weights
    weights = save_state(net, tmp_path / "w.safetensors")
    out = tmp_path / "net.onnx"
    export_onnx(g, out, weights)
    x = torch.randn(2, 1, 32, 32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = net.eval()(x).numpy()
    assert np.allclose(got, want, atol=1e-4)


def test_weights_of_another_network_are_refused_and_nothing_is_written(tmp_path):
    from lenna.deploy import export_onnx

    other = build(every_op_genotype("lenna"))  # other ops (a resized network is not refused)
    weights = save_state(other, tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="holds the weights of another network"):
        export_onnx(cheap_genotype("lenna"), tmp_path / "net.onnx", weights)
    assert not (tmp_path / "net.onnx").exists()


@pytest.mark.slow
def test_an_export_that_does_not_match_is_not_written(tmp_path):
    from lenna.deploy import export_onnx

    out = tmp_path / "net.onnx"
    out.write_bytes(b"the previous export")
    with pytest.raises(InputError, match="not faithful, nothing was written"):
        export_onnx(cheap_genotype("lenna"), out, atol=-1.0)  # no output can pass
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temporary left


@pytest.mark.slow
def test_cli_export_with_weights_from_evaluate_arch(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    w = tmp_path / "w.safetensors"
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, [*args, "--weights-out", str(w)])
    assert result.exit_code == 0, all_text(result)
    assert w.is_file() and not (tmp_path / NETWORK_WEIGHTS).exists()
    assert json.loads(result.stdout)["weights"] == str(w)
    out = tmp_path / "net.onnx"
    result = runner.invoke(app, ["export", str(g), "--out", str(out), "--weights", str(w)])
    assert result.exit_code == 0, all_text(result)
    assert "trained weights" in " ".join(all_text(result).split()) and out.is_file()


@pytest.mark.slow
def test_cli_export_finds_the_weights_evaluate_arch_saved_beside_the_genotype(tmp_path):
    """Issue 27: `lenna export RUN/genotype.json` exports the trained network by itself."""
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    w = tmp_path / NETWORK_WEIGHTS
    assert w.is_file() and str(w) in " ".join(all_text(result).split())
    out = tmp_path / "net.onnx"
    result = runner.invoke(app, ["export", str(g), "--out", str(out)])
    assert result.exit_code == 0, all_text(result)
    assert f"trained weights ({w}: 1 epoch on synthetic)" in all_text(result)
    trained = load_weights(build(Genotype.load(g), 1), w).eval()
    x = torch.randn(2, 1, 32, 32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert np.allclose(got, trained(x).numpy(), atol=1e-4)
    result = runner.invoke(app, ["export", str(g), "--out", str(out), "--initial"])
    assert result.exit_code == 0, all_text(result)
    assert "initial weights (seed 0)" in " ".join(all_text(result).split())
    other = save_state(trained, tmp_path / "other.safetensors")  # --weights: that file
    result = runner.invoke(app, ["export", str(g), "--out", str(out), "--weights", str(other)])
    assert result.exit_code == 0, all_text(result)
    assert f"trained weights ({other})" in all_text(result)


def test_evaluate_arch_without_training_saves_no_weights(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "0", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert json.loads(result.stdout)["weights"] is None
    assert not (tmp_path / NETWORK_WEIGHTS).exists()


def test_evaluate_arch_never_replaces_saved_weights_unasked(tmp_path):
    """A quick check after a long training must not overwrite the long training's weights."""
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    w = tmp_path / NETWORK_WEIGHTS
    w.write_bytes(b"weights of a long training")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert json.loads(result.stdout)["weights"] is None
    text = all_text(result)
    said_first = text.find(f"note: {w} holds weights saved before and is kept")
    assert 0 <= said_first < text.find(f"kept {w} (saved before)"), text  # before training
    assert w.read_bytes() == b"weights of a long training"


def test_evaluate_arch_in_a_folder_it_cannot_write_saves_nothing(tmp_path, monkeypatch):
    import os

    readable = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: mode != os.W_OK and readable(p, mode))
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert json.loads(result.stdout)["weights"] is None
    assert not (tmp_path / NETWORK_WEIGHTS).exists()


def test_weights_that_cannot_be_saved_are_a_warning_and_the_result_is_kept(tmp_path, monkeypatch):
    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lenna.search.verify.save_state", full_disk)
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    res = json.loads(result.stdout)
    assert res["weights"] is None and res["measured_ms"] > 0
    assert "lenna: warning: the trained weights were not saved" in all_text(result)
    assert "No space left on device" in all_text(result)


def test_export_of_weights_for_other_images_is_refused(tmp_path):
    from dataclasses import replace

    from lenna.deploy import export_onnx

    g = cheap_genotype("lenna")
    ten = replace(g, net=replace(g.net, num_classes=10))
    w = save_state(build(ten, 1), tmp_path / "w.safetensors", ten)
    with pytest.raises(InputError, match="in 10 classes; this genotype's takes"):
        export_onnx(replace(g, net=replace(g.net, num_classes=4)), tmp_path / "n.onnx", w)


@pytest.mark.slow
def test_weights_trained_for_other_cells_are_refused_even_when_they_would_load(tmp_path):
    """Two cells that differ only in parameter-free ops have the same state dict: the cells
    recorded in the weights file tell them apart."""
    from lenna.deploy import export_onnx

    g = cheap_genotype("lenna")
    other_cells = {bt: list(ops) for bt, ops in g.cells.items()}
    i = other_cells["reduction"].index("2x2_maxpool")
    other_cells["reduction"][i] = "2x2_avgpool"
    other = Genotype("lenna", other_cells, g.net, g.lam)
    w = save_state(build(other, 1), tmp_path / NETWORK_WEIGHTS, other)
    build(g, 1).load_state_dict(load_file(str(w)), strict=True)  # would load silently
    with pytest.raises(InputError, match="trained for other cells"):
        export_onnx(g, tmp_path / "net.onnx", w)
    assert not (tmp_path / "net.onnx").exists()
    export_onnx(other, tmp_path / "net.onnx", w)  # its own genotype's weights: exported
    gpath = g.save(tmp_path / "genotype.json")  # found beside the genotype: refused as well
    one_line_error(
        runner.invoke(app, ["export", str(gpath), "--out", str(tmp_path / "n2.onnx")]),
        "trained for other cells",
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--out", "net.txt"], "an ONNX file ends in .onnx"),
        (["--out", "missing/net.onnx"], "does not exist"),
        (["--out", "net.onnx", "--weights", "nowhere.safetensors"], "no such weights file"),
        (["--out", "net.onnx", "--weights", "w.safetensors", "--initial"], "exclude each other"),
    ],
)
def test_cli_export_refuses_bad_options_in_one_line(tmp_path, monkeypatch, extra, needle):
    monkeypatch.chdir(tmp_path)
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    one_line_error(runner.invoke(app, ["export", str(g), *extra]), needle)


def test_without_onnxruntime_the_export_says_how_to_install(tmp_path, monkeypatch):
    without_onnxruntime(monkeypatch)
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    result = runner.invoke(app, ["export", str(g), "--out", str(tmp_path / "n.onnx")])
    one_line_error(result, "pip install -e '.[onnx]' in the LENNA checkout")


@pytest.mark.slow
def test_weights_of_a_resized_network_export_at_their_shape(tmp_path):
    """evaluate-arch may train the genotype at another shape (``--cells``, ``--preset``):
    the weights file records it and the export builds that network."""
    from dataclasses import replace

    from lenna.deploy import export_onnx
    from lenna.search.verify import saved_shape

    g = cheap_genotype("darts")
    shape = replace(g.net, cells=4, channels=4)
    w = save_state(build(g, 1, shape), tmp_path / "w.safetensors")
    assert saved_shape(w) == shape
    res = export_onnx(g, tmp_path / "net.onnx", weights=w)
    assert res["weights"] == str(w) and (tmp_path / "net.onnx").is_file()
    assert saved_shape(tmp_path / "net.onnx") is None  # not a weights file: no shape


@pytest.mark.parametrize("net", ["{torn", "[4]", '{"cells": "4"}', '{"future": 1}'])
def test_a_weights_file_whose_recorded_shape_is_unreadable_is_refused(tmp_path, net):
    """Not loaded into the genotype's own shape instead: one line naming the file."""
    from lenna.search.verify import saved_shape

    w = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, str(w), metadata={"net": net})
    with pytest.raises(InputError, match="recorded network shape is unreadable") as e:
        saved_shape(w)
    assert str(w) in str(e.value)
