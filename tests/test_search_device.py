"""The compute device of a search and of training, apart from the measurement device."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from measure_helpers import one_line_error
from search_helpers import (
    Stop,
    cheap_genotype,
    predictor_folder,
    run,
    stop_after,
    tiny_config,
)
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.predict import list_kinds
from lenna.predict.base import predictor_class
from lenna.predict.io import load_predictor
from lenna.search.config import SearchConfig
from lenna.search.device import compute_device

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
NO_CUDA = not torch.cuda.is_available()


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert compute_device("auto").type == want
    assert compute_device(None).type == want
    assert compute_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "mps", "", "cuda:x"])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(InputError):
        compute_device(spec)


@pytest.mark.skipif(not NO_CUDA, reason="checks a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_is_refused_in_one_line_without_a_gpu(spec):
    with pytest.raises(InputError, match="CUDA is not available"):
        compute_device(spec)
    cfg = SearchConfig(device=spec)  # a config may name it (a run folder from a GPU machine)
    with pytest.raises(InputError, match="CUDA is not available"):
        run(replace(tiny_config(), device=cfg.device), Path("/nonexistent/never-written"))


@pytest.mark.slow
def test_a_run_folder_from_a_gpu_machine_resumes_on_the_cpu(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(Stop):
        run(tiny_config(epochs=2), out, on_epoch=stop_after(1))
    cfg_path = out / "config.json"
    stored = json.loads(cfg_path.read_text())
    assert stored["amp"] == "auto"
    stored["device"] = "cuda:1"  # as written on a GPU machine
    cfg_path.write_text(json.dumps(stored))
    res = run(tiny_config(epochs=2, device="cpu"), out, resume=True)
    assert res.genotype is not None


@pytest.mark.slow
def test_a_search_on_an_explicit_cpu_is_the_auto_search_here(tmp_path):
    if not NO_CUDA:
        pytest.skip("auto is a GPU here")
    a = run(tiny_config(epochs=1), tmp_path / "a")
    b = run(tiny_config(epochs=1, device="cpu"), tmp_path / "b")
    assert a.genotype.cells == b.genotype.cells
    assert json.loads((tmp_path / "b" / "config.json").read_text())["device"] == "cpu"


@pytest.mark.slow
def test_a_resume_may_name_another_device(tmp_path):
    out = tmp_path / "r"
    run(tiny_config(epochs=1), out)
    res = run(tiny_config(epochs=1, device="cpu"), out, resume=True)
    assert res.genotype is not None  # the device is not a setting that must match


DIFFERENTIABLE = [k for k in list_kinds() if predictor_class(k).differentiable]


@pytest.mark.parametrize("kind", DIFFERENTIABLE)
def test_the_latency_term_on_an_explicit_device_gives_the_same_value_and_gradient(kind):
    from lenna.search.latency import LatencyTerm
    from lenna.search.network import NetConfig, Network
    from lenna.space import get_space

    sp = get_space("lenna")
    specs = Network(sp, NetConfig(channels=8, cells=3), "weighted").specs
    a = torch.randn(sp.alpha_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = []
    for device in (None, "cpu"):
        model = load_predictor(predictor_folder("lenna", kind), space="lenna")
        kw = {} if device is None else {"device": device}
        term = LatencyTerm(model, sp, specs, lam=1.0, **kw)
        leaf = a.clone().requires_grad_(True)
        e = term.expected_ms({"normal": leaf, "reduction": leaf})
        (g,) = torch.autograd.grad(e, [leaf])
        out.append((float(e.detach()), g))
    assert out[0][0] == out[1][0]
    assert torch.equal(out[0][1], out[1][1])


@pytest.mark.parametrize("kind", [k for k in DIFFERENTIABLE if k not in ("lut", "lut+mlp")])
def test_a_predictor_moved_to_a_device_leaves_no_tensor_behind(kind, monkeypatch):
    """On the meta device every op checks its operands' devices but computes nothing: a tensor
    the move missed would raise here, as it would on a GPU. (The op table stays on the CPU by
    design and is checked on the CPU path above; the finiteness check of α reads a value,
    which a meta tensor has not.)"""
    import sys

    monkeypatch.setattr(sys.modules["lenna.space.encode"], "_check_torch", lambda *a: None)
    model = load_predictor(predictor_folder("lenna", kind), space="lenna").to("meta")
    a = torch.zeros((15, 11), dtype=torch.float64, device="meta", requires_grad=True)
    ms = model.predict(a, "normal", 16, 16)
    assert ms.device.type == "meta" and ms.shape == ()


def test_the_search_cli_refuses_a_bad_device_before_writing(tmp_path):
    out = tmp_path / "s"
    args = ["search", "--out", str(out), "--data", "synthetic", "--epochs", "1"]
    one_line_error(runner.invoke(app, [*args, "--device", "tpu"]), "unknown compute device")
    assert not out.exists()
    if NO_CUDA:
        one_line_error(runner.invoke(app, [*args, "--device", "cuda:1"]), "CUDA is not available")
        assert not out.exists()


def test_evaluate_arch_trains_on_the_compute_device_and_times_on_the_measure_device(tmp_path):
    g = cheap_genotype("lenna").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--data", "synthetic", "--epochs", "1", "--json"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--measure-device", "cpu"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout[result.stdout.index("{") :])
    assert res["device"] == "cpu" and res["fingerprint"]["device"] == "cpu"
