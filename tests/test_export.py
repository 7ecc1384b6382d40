"""`lenna export`: the derived network as ONNX, checked under ONNX Runtime (issue 27, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from measure_helpers import all_text, one_line_error, without_onnxruntime
from search_helpers import cheap_genotype
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.verify import build, save_state
from lenna.space import get_space

ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'lenna[onnx]'")
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
        assert out.is_file() and res["max_abs_diff"] <= 1e-4 and res["batches"] == [1, 3]
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
        (logits,) = session.run(None, {"images": x})  # any batch: the axis is dynamic
        assert logits.shape == (5, 4)
    assert used == every - {"none"}  # the check covered every candidate op


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


def test_an_export_that_does_not_match_is_not_written(tmp_path):
    from lenna.deploy import export_onnx

    out = tmp_path / "net.onnx"
    out.write_bytes(b"the previous export")
    with pytest.raises(InputError, match="not faithful, nothing was written"):
        export_onnx(cheap_genotype("lenna"), out, atol=-1.0)  # no output can pass
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temporary left


def test_cli_export_with_weights_from_evaluate_arch(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    w = tmp_path / "w.safetensors"
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, [*args, "--weights-out", str(w)])
    assert result.exit_code == 0, all_text(result)
    assert w.is_file()
    out = tmp_path / "net.onnx"
    result = runner.invoke(app, ["export", str(g), "--out", str(out), "--weights", str(w)])
    assert result.exit_code == 0, all_text(result)
    assert "trained weights" in " ".join(all_text(result).split()) and out.is_file()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--out", "net.txt"], "an ONNX file ends in .onnx"),
        (["--out", "missing/net.onnx"], "does not exist"),
        (["--out", "net.onnx", "--weights", "nowhere.safetensors"], "no such weights file"),
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
    one_line_error(result, "pip install 'lenna[onnx]'")


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
