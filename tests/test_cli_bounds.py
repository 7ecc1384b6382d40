"""Inputs past what the libraries underneath take, and outputs that would destroy or lose
work: each ends in one line (exit 2) before anything is written."""

import json
import shutil
import sqlite3

import pytest
import torch
from measure_helpers import one_line_error
from predict_helpers import small_model, synthetic_db
from safetensors.torch import load_file, save_file
from search_helpers import cheap_genotype, predictor_folder
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.limits import MAX_SEED, MAX_THREADS
from lenna.measure.store import Dataset
from lenna.predict import load_predictor, save_predictor
from lenna.search.config import SearchConfig
from lenna.search.folder import check_resumable

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()
MEASURE = ["measure", "--space", "lenna", "--channels", "8:8", "--no-normalise"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-n", "1", "--seed", "-1"], "--seed must be an integer from 0 to"),
        (["-n", "1", "--seed", str(MAX_SEED + 1)], "--seed must be an integer from 0 to"),
        (["-n", "1", "--threads", "100000"], f"threads must be from 1 to {MAX_THREADS}"),
        (["-n", "10000000000"], "-n must be from 0 to 10,000,000"),
        (["-n", "1", "--resolutions", ""], "--resolutions must be positive integers"),
        (["-n", "1", "--block-types", ""], "--block-types: unknown"),
        (["-n", "1", "--resolutions", "1", "--block-types", "reduction"], "no valid (block type"),
        (["-n", "1", "--resolutions", "16,8,16"], "--resolutions lists 16 twice"),
        (["-n", "1", "--block-types", "normal,normal"], "--block-types lists normal twice"),
    ],
    ids=[
        "negative_seed",
        "huge_seed",
        "huge_threads",
        "huge_n",
        "no_resolutions",
        "no_types",
        "nothing_to_draw",
        "resolution_twice",
        "type_twice",
    ],
)
def test_measure_refuses_numbers_past_the_libraries_and_writes_no_file(tmp_path, extra, needle):
    out = tmp_path / "d.db"
    one_line_error(runner.invoke(app, [*MEASURE, "--out", str(out), *extra]), needle)
    assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_train_refuses_a_seed_out_of_range(tmp_path, seed):
    out = tmp_path / "m"
    args = ["train", str(synthetic_db()), "--model", "elasticnet", "--out", str(out)]
    one_line_error(runner.invoke(app, [*args, "--seed", seed]), "--seed must be an integer")
    assert not out.exists()


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_search_config_refuses_a_seed_out_of_range(seed):
    with pytest.raises(InputError, match="--seed must be an integer from 0 to"):
        SearchConfig(seed=seed)


def test_search_config_names_the_flags_in_its_messages():
    with pytest.raises(InputError, match=r"--arch-lr \(a_lr\) must be > 0"):
        SearchConfig(a_lr=0.0)
    with pytest.raises(InputError, match=r"--budget-ms \(budget_ms\) must be a number of ms > 0"):
        SearchConfig(budget_ms=0.0, predictor="x")
    with pytest.raises(InputError, match=r"--fixed-ms \(fixed_ms\) must be"):
        SearchConfig(fixed_ms=-1.0)


def _truncate_first_vector(folder):
    """Cut the model's first 1-D tensor of length > 2 to length 2 (a tampered file)."""
    path = folder / "weights.safetensors"
    tensors = load_file(str(path))
    key = next(k for k, t in tensors.items() if t.ndim == 1 and t.numel() > 2)
    tensors[key] = tensors[key][:2].clone()
    save_file(tensors, str(path))


@pytest.mark.parametrize("kind", ["elasticnet", "mlp"])
def test_weights_of_the_wrong_shape_are_refused_at_load(tmp_path, kind):
    folder = save_predictor(small_model(kind), tmp_path / kind)
    load_predictor(folder)  # whole: loads
    _truncate_first_vector(folder)
    with pytest.raises(InputError, match="has malformed weights or parameters"):
        load_predictor(folder)
    result = runner.invoke(app, ["evaluate", str(folder), "--data", str(synthetic_db())])
    one_line_error(result, "has malformed weights or parameters")


# ---- outputs ------------------------------------------------------------------------------
@pytest.fixture
def genotype_file(tmp_path):
    (tmp_path / "run").mkdir()
    return cheap_genotype("lenna").save(tmp_path / "run" / "genotype.json")


def _eval_arch(genotype, *extra):
    return ["evaluate-arch", str(genotype), "--data", "synthetic", "--epochs", "1", *extra]


def test_weights_out_never_replaces_a_file_of_another_kind(tmp_path, genotype_file):
    victim = shutil.copy(synthetic_db(), tmp_path / "victim.db")
    before = victim.read_bytes()
    result = runner.invoke(app, _eval_arch(genotype_file, "--weights-out", str(victim)))
    one_line_error(result, "exists and is not a network's weights file; refusing to replace it")
    assert victim.read_bytes() == before
    with Dataset.open(victim, readonly=True) as ds:
        assert len(ds.samples()) > 0


def test_weights_out_never_replaces_a_predictors_weights(tmp_path, genotype_file):
    """A predictor's weights are safetensors too, but not a network's."""
    folder = save_predictor(small_model("elasticnet"), tmp_path / "model")
    target = folder / "weights.safetensors"
    before = target.read_bytes()
    result = runner.invoke(app, _eval_arch(genotype_file, "--weights-out", str(target)))
    one_line_error(result, "is not a network's weights file")
    assert target.read_bytes() == before


def test_a_shape_the_model_does_not_cover_is_not_damage(tmp_path, monkeypatch):
    """The load-time prediction skips a range refusal (an op table measured at other
    resolutions): the model loads, and a search checks its own shapes."""
    folder = save_predictor(small_model("elasticnet"), tmp_path / "m")
    cls = type(small_model("elasticnet"))

    def refuse(self, X):
        raise InputError("the op table has no resolution 16")

    monkeypatch.setattr(cls, "predict_features", refuse)
    assert load_predictor(folder).kind == "elasticnet"


def test_weights_out_is_not_the_genotype_nor_a_folder(tmp_path, genotype_file):
    before = genotype_file.read_bytes()
    args = _eval_arch(genotype_file, "--weights-out", str(genotype_file))
    one_line_error(runner.invoke(app, args), "is the genotype itself")
    assert genotype_file.read_bytes() == before
    folder = tmp_path / "adir"
    folder.mkdir()
    args = _eval_arch(genotype_file, "--weights-out", str(folder))
    one_line_error(runner.invoke(app, args), "is a folder; give a file name")


def test_weights_out_may_replace_earlier_weights(tmp_path, genotype_file):
    """An existing safetensors file is what --weights-out writes: the check lets it through
    (the run then fails later on purpose here, at the unknown data set)."""
    earlier = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, str(earlier), metadata={"net": "{}"})  # as save_state
    args = [
        "evaluate-arch",
        str(genotype_file),
        "--data",
        "imagenet",
        "--weights-out",
        str(earlier),
    ]
    one_line_error(runner.invoke(app, args), "unknown dataset 'imagenet'")


def test_outputs_that_are_folders_are_refused_before_any_work(tmp_path, genotype_file):
    folder = tmp_path / "out.onnx"
    folder.mkdir()
    args = ["export", str(genotype_file), "--out", str(folder)]
    one_line_error(runner.invoke(app, args), "is a folder; give a file name")
    folder = tmp_path / "out.csv"
    folder.mkdir()
    args = ["dataset", "export", str(synthetic_db()), str(folder)]
    one_line_error(runner.invoke(app, args), "is a folder; give a file name")


@pytest.mark.slow
def test_a_refused_sweep_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "sweep"
    bad = tmp_path / "notamodel"
    bad.mkdir()
    args = ["sweep", "--out", str(out), "--lams", "0", "--predictor", str(bad)]
    one_line_error(runner.invoke(app, args), "is not a LENNA model")
    assert not out.exists()
    args = ["sweep", "--out", str(out), "--lams", "0", "--predictor", str(predictor_folder())]
    one_line_error(runner.invoke(app, [*args, "--data", "imagenet"]), "unknown dataset")
    assert not out.exists()


def test_a_damaged_dataset_is_one_line_naming_it(tmp_path):
    db = shutil.copy(synthetic_db(), tmp_path / "d.db")
    data = bytearray(db.read_bytes())
    page = 4096
    for i in range(2 * page, len(data) - page, page):  # every page after the schema's
        data[i : i + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    result = runner.invoke(app, ["dataset", "info", str(db)])
    one_line_error(result, f"{db} is damaged")


def test_an_unknown_search_mode_lists_only_the_search_modes():
    with pytest.raises(InputError) as e:
        SearchConfig(mode="foo")
    assert "expected one of: weighted, gated" in str(e.value)
    assert "fixed" not in str(e.value)


def test_a_cutout_wider_than_the_images_is_refused_before_measuring(genotype_file):
    args = _eval_arch(genotype_file, "--cutout", "1000")
    one_line_error(runner.invoke(app, args), "a cutout of 1000 pixels blanks every")


@pytest.mark.parametrize(
    ("option", "in_search", "in_sweep"),
    [
        (["--target-ms", "1"], "--target-ms acts only with --lam > 0", "give --budget-ms T"),
        (["--ref-ms", "2"], "--ref-ms acts only with --lam > 0", "--ref-ms acts only with"),
    ],
    ids=["target", "ref"],
)
def test_an_option_of_the_lambda_term_without_lambda_is_refused_not_ignored(
    tmp_path, option, in_search, in_sweep
):
    out, model = tmp_path / "run", str(predictor_folder())
    for command, points, needle in (
        ("search", [], in_search),
        ("sweep", ["--lams", "0"], in_sweep),
    ):
        args = [command, "--out", str(out), *points, "--predictor", model, *option]
        one_line_error(runner.invoke(app, args), needle)
        assert not out.exists()


def test_a_reference_with_a_budget_is_refused_not_ignored(tmp_path):
    out, model = tmp_path / "run", str(predictor_folder())
    for command, points in (("search", ["--budget-ms", "9"]), ("sweep", ["--budgets", "9"])):
        args = [command, "--out", str(out), *points, "--predictor", model, "--ref-ms", "2"]
        one_line_error(runner.invoke(app, args), "a budget scales by itself")
        assert not out.exists()


def test_edited_feature_names_are_refused_at_load(tmp_path):
    folder = save_predictor(small_model("elasticnet"), tmp_path / "m")
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][:3]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="feature_names are not space"):
        load_predictor(folder)


SEARCH = ["search", "--data", "synthetic", "--limit", "32", "--epochs", "1", "--batch", "16"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--channels", "99999999"],
            "the network is too large to build (its tensor sizes overflow)",
        ),
        (["--cells", "1000000"], "network cells must be <= 1000, got 1000000"),
    ],
    ids=["channels_overflow", "a_million_cells"],
)
def test_a_network_too_large_to_describe_is_one_line_before_anything_is_built(
    tmp_path, extra, needle
):
    """Channels whose weights overflow torch's size arithmetic (even on the meta device), and
    a cell count that would take minutes to build, end before the memory guard needs them."""
    out = tmp_path / "s"
    args = [*SEARCH, "--device", "cpu", "--fixed-ms", "0.4", "--out", str(out), *extra]
    one_line_error(runner.invoke(app, args), needle)
    assert not out.exists()


def test_a_damaged_metadata_page_is_one_line_naming_the_file(tmp_path):
    db = shutil.copy(synthetic_db(), tmp_path / "d.db")
    data = bytearray(db.read_bytes())
    page = 4096
    for i in range(page, len(data), page):  # every page but the header's, the metadata's too
        data[i : i + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    for cmd in (
        ["dataset", "info", str(db)],
        ["train", str(db), "--model", "elasticnet", "--out", str(tmp_path / "m")],
    ):
        one_line_error(runner.invoke(app, cmd), f"{db} is damaged (SQLite:")
    assert not (tmp_path / "m").exists()


def test_an_output_whose_folder_is_a_file_says_so(tmp_path):
    blocker = tmp_path / "notafolder"
    blocker.write_text("")
    args = ["dataset", "export", str(synthetic_db()), str(blocker / "x.csv")]
    one_line_error(runner.invoke(app, args), f"{blocker} is a file, not a folder")


def test_a_dataset_sqlite_cannot_create_is_one_line_naming_it(tmp_path, monkeypatch):
    def refuse(tmp, *a, **k):
        tmp.write_bytes(b"")  # SQLite made the file, then failed
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(Dataset, "_create_at", refuse)
    out = tmp_path / "d.db"
    with pytest.raises(InputError, match=f"cannot create {out} \\(unable to open database file"):
        Dataset.create(out, {"space": "lenna"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["demo", "sweep"])
def test_an_out_folder_of_something_else_is_refused_and_left_as_it_was(tmp_path, command):
    """A predictor's folder given as --out (running again resumes, so any existing folder
    would do): refused, and nothing is added to it."""
    folder = shutil.copytree(predictor_folder(), tmp_path / "model")
    before = sorted(p.name for p in folder.iterdir())
    if command == "demo":
        args = ["demo", "--quick", "--out", str(folder)]
    else:
        args = ["sweep", "--out", str(folder), "--lams", "0", "--predictor", str(folder)]
    one_line_error(runner.invoke(app, args), "holds other files and is not a")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_folder_holding_only_hidden_files_is_not_foreign(tmp_path):
    """A desktop's .DS_Store, or a killed run's hidden temporary, is no other tool's file."""
    (tmp_path / ".DS_Store").write_text("")
    check_resumable(tmp_path, lambda name: False, "a demo's folder")
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(InputError, match="holds other files and is not a demo's folder"):
        check_resumable(tmp_path, lambda name: False, "a demo's folder")
