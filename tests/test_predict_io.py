"""Model folders and dataset loading: no pickle anywhere, one clear refusal per bad input.

A model folder is ``model.json`` + ``weights.safetensors`` (+ LightGBM's text model for gbdt);
loading must refuse anything malformed with an :class:`InputError` and warn (only) when the
labels came from another machine.
"""

import json
import os
import pickle
import pickletools
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from predict_helpers import KINDS, copy_db, edit_json, small_model, synthetic_data, synthetic_db
from safetensors import safe_open
from synthetic import make_synthetic

from lenna.errors import InputError
from lenna.predict import evaluate_model, load_data, load_predictor, save_predictor
from lenna.predict.io import ForeignMachine
from lenna.predict.lut import LUTPredictor
from lenna.predict.splits import make_split
from lenna.predict.train import train_predictor
from lenna.space import get_space

pytestmark = pytest.mark.usefixtures("single_thread")

PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04\x95", b"\x80\x05\x95")


@pytest.fixture(scope="module")
def lut_folder(tmp_path_factory):
    """A saved lut model (do not modify: use ``lut_copy``)."""
    return save_predictor(small_model("lut"), tmp_path_factory.mktemp("lut") / "m")


@pytest.fixture
def lut_copy(lut_folder, tmp_path):
    return shutil.copytree(lut_folder, tmp_path / "m")


def parses_as_pickle(blob: bytes) -> bool:
    try:
        ops = list(pickletools.genops(blob))
    except Exception:
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


# ---- 3. no pickle; what the folder holds ---------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_folder_holds_no_pickle(kind, tmp_path):
    folder = save_predictor(small_model(kind), tmp_path / "m")
    expected = {"model.json", "weights.safetensors"} | (
        {"model.lgb.txt"} if kind == "gbdt" else set()
    )
    assert {p.name for p in folder.iterdir()} == expected
    assert all(p.is_file() for p in folder.iterdir())
    for p in folder.iterdir():
        blob = p.read_bytes()
        assert blob, p
        assert not (blob[0] == 0x80 and 2 <= blob[1] <= 5), f"{p.name} starts like a pickle"
        assert not blob.startswith(PICKLE_HEADERS), p.name
        assert not blob.startswith(b"PK\x03\x04"), f"{p.name} is a zip (torch.save?)"
        assert not parses_as_pickle(blob), p.name
    # every file is read completely by its own, non-executing parser
    json.loads((folder / "model.json").read_text())
    with safe_open(str(folder / "weights.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert kind == "gbdt" or keys
    if kind == "gbdt":
        assert (folder / "model.lgb.txt").read_text().startswith("tree")


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_never_call_pickle(kind, tmp_path, monkeypatch):
    model = small_model(kind)  # trained before pickle is patched away

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for mod, names in ((pickle, ("dump", "dumps", "load", "loads")), (torch, ("save", "load"))):
        for name in names:
            monkeypatch.setattr(mod, name, refuse)
    folder = save_predictor(model, tmp_path / "m")
    assert load_predictor(folder).kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_model_json_describes_the_model(kind, tmp_path):
    model = small_model(kind)
    meta = json.loads((save_predictor(model, tmp_path / "m") / "model.json").read_text())
    for key in ("format_version", "kind", "space", "space_hash", "feature_names", "info"):
        assert key in meta, key
    assert meta["kind"] == kind
    assert meta["differentiable"] is model.differentiable
    assert meta["space"] == "lenna"
    assert meta["space_hash"] == model.space.definition_hash()
    assert meta["feature_names"] == model.space.feature_names()
    assert len(meta["feature_names"]) == model.space.num_features
    info = meta["info"]
    for key in ("ranges", "split", "fingerprint", "metrics"):
        assert key in info, key
    assert set(info["split"]) == {"train", "val", "test"}
    assert info["fingerprint"]["hash"] == synthetic_data().fingerprint["hash"]
    assert set(info["metrics"]) == {"held_out", "extrapolation", "one_hot"}
    assert set(info["ranges"]) == {"block_types", "channels", "resolutions"}


# ---- 5. load_predictor refusals ----------------------------------------------------------------
def test_load_refuses_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not a LENNA model"):
        load_predictor(tmp_path / "nowhere")


def test_load_refuses_a_folder_without_model_json(lut_copy):
    (lut_copy / "model.json").unlink()
    with pytest.raises(InputError, match=r"no model\.json"):
        load_predictor(lut_copy)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not JSON"),
        ("[]", "a JSON object was expected, not list"),
        ('{"kind": "lut"}', "no field 'format_version'"),
        ("", "not JSON"),
    ],
)
def test_load_refuses_malformed_json(lut_copy, text, why):
    (lut_copy / "model.json").write_text(text)
    with pytest.raises(InputError, match="malformed") as e:
        load_predictor(lut_copy)
    assert why in str(e.value) and "Error" not in str(e.value)  # said, not a class name


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.update(kind="transformer"), "unknown model kind 'transformer'"),
        (lambda m: m.update(format_version=99), "format 99, newer"),
        (lambda m: m.update(space_hash="0" * 12), "another definition of space 'lenna'"),
        (lambda m: m.update(space="nope"), "nope"),
    ],
    ids=["kind", "format", "space_hash", "space_name"],
)
def test_load_refuses_edited_model_json(lut_copy, edit, needle):
    edit_json(lut_copy / "model.json", edit)
    with pytest.raises(InputError, match=needle):
        load_predictor(lut_copy)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.unlink(),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"garbage!garbage!garbage!"),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    ],
    ids=["missing", "empty", "garbage", "truncated"],
)
def test_load_refuses_missing_or_corrupt_weights(lut_copy, damage):
    damage(lut_copy / "weights.safetensors")
    with pytest.raises(InputError, match=r"weights\.safetensors is missing or malformed"):
        load_predictor(lut_copy)


def test_load_refuses_weights_of_another_model(lut_copy, tmp_path):
    other = save_predictor(small_model("elasticnet"), tmp_path / "other")
    shutil.copy(other / "weights.safetensors", lut_copy / "weights.safetensors")
    with pytest.raises(InputError, match="malformed weights"):
        load_predictor(lut_copy)


@pytest.mark.parametrize(
    "damage", [lambda p: p.unlink(), lambda p: p.write_text("garbage")], ids=["missing", "garbage"]
)
def test_load_refuses_missing_or_corrupt_gbdt_model_file(tmp_path, damage, capfd):
    """One line: LightGBM's own ``[Fatal]`` print on the process's stderr is silenced, and
    the descriptor works again afterwards."""
    folder = save_predictor(small_model("gbdt"), tmp_path / "m")
    damage(folder / "model.lgb.txt")
    with pytest.raises(InputError, match=r"model\.lgb\.txt"):
        load_predictor(folder)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "[Fatal]" not in err
    assert "after" in err


def test_load_refuses_another_space(lut_folder):
    with pytest.raises(InputError, match="space 'lenna', not 'darts'"):
        load_predictor(lut_folder, space="darts")
    assert load_predictor(lut_folder, space="lenna").kind == "lut"


def test_load_from_another_machine_warns(lut_copy):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForeignMachine)  # this machine's own model: no warning
        load_predictor(lut_copy)
    edit_json(lut_copy / "model.json", lambda m: m["info"]["fingerprint"].update(hash="f" * 12))
    with pytest.warns(ForeignMachine, match="another machine"):
        model = load_predictor(lut_copy)
    assert model.kind == "lut"  # a warning, not a refusal


# ---- 5. dataset refusals ----------------------------------------------------------------------
def test_training_refuses_an_empty_dataset(tmp_path):
    db = make_synthetic(tmp_path / "empty.db", n=0)
    with pytest.raises(InputError, match="holds no samples"):
        train_predictor(db, "lut")


def test_training_refuses_a_one_row_dataset(tmp_path):
    db = make_synthetic(tmp_path / "one.db", n=1)
    with pytest.raises(InputError, match=r"at least 3 samples.*got 1"):
        train_predictor(db, "lut")


def test_training_refuses_too_few_training_rows(tmp_path):
    db = make_synthetic(tmp_path / "three.db", n=3)
    with pytest.raises(InputError, match="at least 2 training samples"):
        train_predictor(db, "mlp")


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_training_refuses_infinite_labels(tmp_path, value):
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE samples SET latency_ms = ? WHERE sample_index = 7", (value,))
    con.close()
    with pytest.raises(InputError, match=r"NaN/inf labels \(sample ids \[7\]\)"):
        train_predictor(db, "lut")


def test_a_nan_label_cannot_even_be_stored(tmp_path):
    """SQLite turns a NaN parameter into NULL, which the NOT NULL column refuses."""
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"), con:
        con.execute("UPDATE samples SET latency_ms = ? WHERE sample_index = 7", (float("nan"),))
    con.close()
    assert len(load_data(db)) == 20


@pytest.mark.parametrize("text", ["NaN"])
def test_training_refuses_text_labels(tmp_path, text):
    """BUG (src/lenna/predict/data.py load_data): a label SQLite stored as text ("NaN", written
    by hand or another tool) gets a TypeError from np.isfinite instead of the refusal."""
    db = copy_db(synthetic_db(n=20, seed=3), tmp_path / "d.db")
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE samples SET latency_ms = ? WHERE sample_index = 7", (text,))
    con.close()
    with pytest.raises(InputError, match="sample 7: field latency_ms is not a number"):
        train_predictor(db, "lut")


def test_evaluating_on_another_space_is_refused():
    darts = synthetic_data(n=20, seed=0, space="darts")
    with pytest.raises(InputError, match=r"'lenna'.*'darts'"):
        evaluate_model(small_model("lut"), darts)


def test_training_refuses_data_of_another_space_than_the_model(tmp_path):
    darts = synthetic_data(n=20, seed=0, space="darts")
    model = LUTPredictor(get_space("lenna"))
    with pytest.raises(InputError, match=r"'darts'.*'lenna'"):
        model.fit(darts, make_split(darts))


def test_load_data_refuses_another_space():
    with pytest.raises(InputError, match="'darts' space, not 'lenna'"):
        load_data(synthetic_db(n=20, seed=0, space="darts"), space="lenna")


def test_loaded_data_matches_the_file():
    data = synthetic_data()
    assert len(data) == 300
    assert data.X.shape == (300, data.space.num_features)
    np.testing.assert_array_equal(data.ids, np.arange(300))
    assert np.isfinite(data.y).all() and (data.y > 0).all()
    assert load_data(synthetic_db()).identity == data.identity


# ---- atomic saves (issue 25, D4 and D5) -----------------------------------------------------
@pytest.mark.parametrize("where", ["weights", "meta"])
def test_a_failed_save_keeps_the_previous_model_whole(tmp_path, monkeypatch, where):
    import lenna.predict.io as io_mod

    data = load_data(synthetic_db(n=40, seed=1))
    first = train_predictor(data, "elasticnet", seed=0)
    folder = save_predictor(first, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = train_predictor(data, "mlp", seed=1)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    if where == "weights":
        monkeypatch.setattr(io_mod, "save_file", full_disk)
    else:  # the last file written: model.json
        real = Path.write_text

        def write_text(self, *a, **k):
            if self.name == io_mod.META_FILE:
                full_disk()
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(InputError, match="a previous model there is kept"):
        save_predictor(second, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert load_predictor(folder).kind == "elasticnet"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_safetensors_error_on_save_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import lenna.predict.io as io_mod

    data = load_data(synthetic_db(n=40, seed=1))
    model = train_predictor(data, "elasticnet", seed=0)

    def broken(*a, **k):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(io_mod, "save_file", broken)
    with pytest.raises(InputError, match="SafetensorError"):
        save_predictor(model, tmp_path / "m")


def test_weights_holding_nan_are_refused_on_load(tmp_path):  # issue 25, D10
    from safetensors.torch import load_file, save_file

    folder = save_predictor(small_model("mlp"), tmp_path / "m")
    tensors = load_file(str(folder / "weights.safetensors"))
    key = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(folder / "weights.safetensors"))
    with pytest.raises(InputError, match=f"tensor '{key}' holds NaN or inf"):
        load_predictor(folder)


def _ranges(channels, resolutions=(8,)):
    return {"block_types": ["normal"], "channels": list(channels), "resolutions": list(resolutions)}


@pytest.mark.parametrize(
    "ranges",
    [
        "8..128",
        {"channels": "8:128"},
        {"block_types": [], "channels": [8]},
        _ranges([float("nan"), float("inf")]),  # NaN compares false: every range check passes
        _ranges([128, 8]),
        _ranges([8, 128], [0]),
        _ranges([True, 128]),
    ],
    ids=["text", "channels_text", "one_channel", "nan_inf", "reversed", "zero_res", "bool"],
)
def test_malformed_training_ranges_are_refused_on_load(tmp_path, ranges):  # issue 25, D10
    folder = save_predictor(small_model("elasticnet"), tmp_path / "m")
    edit_json(folder / "model.json", lambda m: m["info"].__setitem__("ranges", ranges))
    with pytest.raises(InputError, match=r"info\.ranges must hold"):
        load_predictor(folder)
