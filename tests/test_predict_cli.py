"""`lenna train` and `lenna evaluate`: tiny happy paths, one-line refusals (exit 2)."""

import json
import shutil
import sqlite3

import pytest
from measure_helpers import all_text, one_line_error
from predict_helpers import copy_db, edit_json, small_model, synthetic_db
from synthetic import make_synthetic
from typer.testing import CliRunner

from lenna.cli import app
from lenna.folder_lock import held_folder
from lenna.predict import load_predictor, save_predictor

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()
METRIC_KEYS = {"rmse_ms", "mape", "within_5", "within_10", "r2", "kendall_tau"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Saved lut and gbdt models trained on ``synthetic_db()`` (do not modify)."""
    root = tmp_path_factory.mktemp("models")
    return {k: save_predictor(small_model(k), root / k.replace("+", "_")) for k in ("lut", "gbdt")}


# ---- train --------------------------------------------------------------------------------------
def test_train_writes_a_model_folder(tmp_path):
    out = tmp_path / "lut"
    result = runner.invoke(app, ["train", str(synthetic_db()), "--model", "lut", "--out", str(out)])
    assert result.exit_code == 0, all_text(result)
    assert "held-out MAPE" in all_text(result)
    assert {p.name for p in out.iterdir()} == {"model.json", "weights.safetensors"}
    model = load_predictor(out)
    assert model.kind == "lut"
    assert model.info["split_kind"] == "random"
    assert model.info["split"]["test"] == small_model("lut").info["split"]["test"]


def test_train_with_the_channels_split(tmp_path):
    out = tmp_path / "m"
    args = ["train", str(synthetic_db()), "--model", "lut", "--out", str(out)]
    result = runner.invoke(app, [*args, "--split", "channels", "--seed", "3"])
    assert result.exit_code == 0, all_text(result)
    info = load_predictor(out).info
    assert info["split_kind"] == "channels"
    assert info["metrics"]["extrapolation"]["n"] > 0


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "foo"], "unknown model 'foo'"),
        (["--model", "lut", "--split", "foo"], "unknown split 'foo'"),
    ],
)
def test_train_refuses_bad_options(tmp_path, extra, needle):
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", str(synthetic_db()), *extra, "--out", str(out)])
    one_line_error(result, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("n", "needle"),
    [(0, "holds no samples"), (1, "at least 3 samples")],
    ids=["empty", "one_row"],
)
def test_train_refuses_tiny_datasets(tmp_path, n, needle):
    db = make_synthetic(tmp_path / "d.db", n=n)
    result = runner.invoke(app, ["train", str(db), "--model", "lut", "--out", str(tmp_path / "m")])
    one_line_error(result, needle)


def test_train_refuses_infinite_labels(tmp_path):
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE samples SET latency_ms = ? WHERE sample_index = 4", (float("inf"),))
    con.close()
    result = runner.invoke(app, ["train", str(db), "--model", "lut", "--out", str(tmp_path / "m")])
    one_line_error(result, "NaN/inf labels")


@pytest.mark.parametrize("value", [0.0, -1.5])
def test_train_refuses_labels_of_no_time(tmp_path, value):  # issue 25, D2
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE samples SET latency_ms = ? WHERE sample_index = 4", (value,))
    con.close()
    out = str(tmp_path / "m")
    result = runner.invoke(app, ["train", str(db), "--model", "elasticnet", "--out", out])
    one_line_error(result, "labels <= 0 ms (sample ids [4])")


def test_train_refuses_a_missing_dataset(tmp_path):
    args = ["train", str(tmp_path / "no.db"), "--model", "lut", "--out", str(tmp_path / "m")]
    one_line_error(runner.invoke(app, args), "no dataset")


# ---- evaluate -----------------------------------------------------------------------------------
def test_train_into_a_folder_another_train_writes_is_refused(tmp_path):
    out = tmp_path / "m"
    with held_folder(out, "train"):
        args = ["train", str(synthetic_db()), "--model", "lut", "--out", str(out)]
        one_line_error(runner.invoke(app, args), "is being written by another train")
    assert out.is_dir() and not any(out.iterdir())  # the holder's folder, untouched


def test_a_refused_train_leaves_no_folder(tmp_path):
    out = tmp_path / "m"
    args = ["train", str(tmp_path / "no.db"), "--model", "lut", "--out", str(out)]
    one_line_error(runner.invoke(app, args), "no dataset")
    assert not out.exists()


def test_evaluate_json_compares_models(folders, tmp_path):
    fig = tmp_path / "f.png"
    args = ["evaluate", str(folders["lut"]), str(folders["gbdt"]), "--data", str(synthetic_db())]
    result = runner.invoke(app, [*args, "--json", "--figure", str(fig)])
    assert result.exit_code == 0, all_text(result)
    out = json.loads(result.stdout)
    assert set(out) == {"lut", "gbdt"}
    for name, r in out.items():
        assert r["kind"] == name
        assert r["differentiable"] is (name != "gbdt")
        assert set(r) >= METRIC_KEYS  # DESIGN's contract: held-out figures per model
        for split in ("held_out", "extrapolation", "one_hot"):
            assert set(r["splits"][split]) >= METRIC_KEYS, (name, split)
        assert r["splits"]["held_out"]["mape"] == r["mape"]
        test = small_model(name).info["split"]["test"]
        assert r["n"] == len(test)  # only rows the model never saw
    assert out["lut"]["mape"] < 2.0
    blob = fig.read_bytes()
    assert blob.startswith(b"\x89PNG\r\n\x1a\n") and len(blob) > 1000


def test_evaluate_table_and_another_dataset(folders):
    other = synthetic_db(n=60, seed=1)
    result = runner.invoke(app, ["evaluate", str(folders["lut"]), "--data", str(other), "--json"])
    assert result.exit_code == 0, all_text(result)
    assert json.loads(result.stdout)["lut"]["n"] == 60  # every row counts
    result = runner.invoke(app, ["evaluate", str(folders["lut"]), "--data", str(other)])
    assert result.exit_code == 0, all_text(result)
    assert "held_out" in result.stdout and "lut" in result.stdout


def test_evaluate_refuses_a_model_of_another_space(folders):
    darts = synthetic_db(n=20, seed=0, space="darts")
    result = runner.invoke(app, ["evaluate", str(folders["lut"]), "--data", str(darts)])
    line = one_line_error(result, "'lenna'")
    assert "'darts'" in line


def test_evaluate_refuses_a_folder_that_is_no_model(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(synthetic_db())])
    one_line_error(result, "not a LENNA model")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.update(format_version=99), "newer"),
        (lambda m: m.update(kind="foo"), "unknown model kind 'foo'"),
    ],
)
def test_evaluate_refuses_edited_models(folders, tmp_path, edit, needle):
    folder = shutil.copytree(folders["lut"], tmp_path / "m")
    edit_json(folder / "model.json", edit)
    result = runner.invoke(app, ["evaluate", str(folder), "--data", str(synthetic_db())])
    one_line_error(result, needle)


def test_evaluate_refuses_a_broken_gbdt_model(folders, tmp_path):
    """BUG (src/lenna/predict/gbdt.py load_state): LightGBMError escapes as a traceback."""
    folder = shutil.copytree(folders["gbdt"], tmp_path / "m")
    (folder / "model.lgb.txt").unlink()
    result = runner.invoke(app, ["evaluate", str(folder), "--data", str(synthetic_db())])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    one_line_error(result, "model.lgb.txt")


def test_evaluate_refuses_a_model_given_twice(folders):
    """The second would replace the first in the table: one model shown, two asked for."""
    lut = folders["lut"]
    args = ["evaluate", str(lut), str(lut / ".." / lut.name), "--data", str(synthetic_db())]
    one_line_error(runner.invoke(app, args), "is given twice")


def test_evaluate_names_two_models_of_one_folder_name_by_their_paths(folders, tmp_path):
    other = shutil.copytree(folders["lut"], tmp_path / "lut")
    args = ["evaluate", str(folders["lut"]), str(other), "--data", str(synthetic_db()), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert set(json.loads(result.stdout)) == {str(folders["lut"]), str(other)}


def test_evaluate_refuses_a_bad_figure_suffix(folders, tmp_path):
    args = ["evaluate", str(folders["lut"]), "--data", str(synthetic_db())]
    one_line_error(runner.invoke(app, [*args, "--figure", str(tmp_path / "f.txt")]), "--figure")
    (tmp_path / "d.png").mkdir()
    one_line_error(runner.invoke(app, [*args, "--figure", str(tmp_path / "d.png")]), "is a folder")


def test_evaluate_warns_about_a_foreign_model(folders, tmp_path):
    folder = shutil.copytree(folders["lut"], tmp_path / "m")
    edit_json(folder / "model.json", lambda m: m["info"]["fingerprint"].update(hash="f" * 12))
    args = ["evaluate", str(folder), "--data", str(synthetic_db()), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert "another machine" in result.stderr
    assert json.loads(result.stdout)["m"]["kind"] == "lut"


def test_evaluate_json_is_strict_json_when_a_split_is_empty(folders, tmp_path):
    """BUG (src/lenna/cli/predict.py evaluate_cmd): metrics of an empty or one-row split are
    NaN, and json.dumps writes the bare token NaN, which is not JSON (jq and others refuse)."""
    db = make_synthetic(tmp_path / "one.db", n=1, seed=9)
    result = runner.invoke(app, ["evaluate", str(folders["lut"]), "--data", str(db), "--json"])
    assert result.exit_code == 0, all_text(result)

    def refuse(token):
        raise AssertionError(f"{token} in --json output")

    out = json.loads(result.stdout, parse_constant=refuse)
    assert out["lut"]["n"] == 1


def test_train_into_a_model_folder_needs_force(tmp_path):
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    out = tmp_path / "m"
    args = ["train", str(db), "--model", "elasticnet", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = (out / "model.json").read_bytes()
    one_line_error(runner.invoke(app, args), "already holds a model; pass --force")
    assert (out / "model.json").read_bytes() == before
    assert runner.invoke(app, [*args, "--seed", "1", "--force"]).exit_code == 0
    assert (out / "model.json").read_bytes() != before
