"""Resuming a search: a stopped and resumed run is the uninterrupted one; checkpoints."""

import json
import pickle
import shutil

import pytest
import torch
from search_helpers import (
    FIELDS,
    TIMING,
    Stop,
    assert_same_run,
    one_thread,
    read_alphas,
    read_metrics,
    run,
    stop_after,
    tiny_config,
    weight_files,
)

from lenna.errors import InputError
from lenna.search.checkpoint import (
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- resume -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("space", "mode"), [("darts", "weighted"), ("lenna", "gated")], ids=["darts", "lenna_gated"]
)
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, space, mode):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run(tiny_config(space, mode=mode, epochs=2), a)
    with pytest.raises(Stop):
        run(tiny_config(space, mode=mode, epochs=2), b, on_epoch=stop_after(1))
    assert not (b / "genotype.json").exists()
    assert load_checkpoint(b)[1]["epoch"] == 1
    assert len(read_metrics(b)[1]) == 1 and len(read_alphas(b)) == 1
    steps = []
    rb = run(
        tiny_config(space, mode=mode, epochs=2),
        b,
        resume=True,
        on_step=lambda st, i, n: steps.append(i),
    )
    assert steps == [1, 2]  # only epoch 2 ran
    assert len(rb.metrics) == 2
    assert_same_run(a, b, ra, rb)


@pytest.mark.slow
def test_a_resumed_metrics_file_reads_as_the_uninterrupted_one(tmp_path):
    """Row for row, column for column, as text (timing columns aside)."""
    a, b = tmp_path / "a", tmp_path / "b"
    run(tiny_config(mode="gated", epochs=2), a)
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=2), b, on_epoch=stop_after(1))
    run(tiny_config(mode="gated", epochs=2), b, resume=True)

    def text(folder):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(folder)[1]]

    assert text(b) == text(a)
    assert [r["epoch"] for r in text(b)] == ["1", "2"]


@pytest.mark.slow
def test_a_run_stopped_twice_and_resumed_twice_equals_the_uninterrupted_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run(tiny_config(mode="gated", epochs=3), a)
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=3), b, on_epoch=stop_after(1))
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=3), b, resume=True, on_epoch=stop_after(2))
    rb = run(tiny_config(mode="gated", epochs=3), b, resume=True)
    assert_same_run(a, b, ra, rb)


@pytest.mark.slow
def test_a_run_stopped_inside_its_first_epoch_resumes_from_scratch(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run(tiny_config(mode="gated", epochs=2), a)

    def on_step(st, i, n):
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=2), b, on_step=on_step)
    assert not (b / "checkpoint.json").exists()
    rb = run(tiny_config(mode="gated", epochs=2), b, resume=True)
    assert_same_run(a, b, ra, rb)


def test_resuming_a_finished_run_runs_nothing_and_gives_the_same_genotype(tmp_path):
    out = tmp_path / "r"
    first = run(tiny_config(mode="gated", epochs=2), out)
    steps = []
    again = run(
        tiny_config(mode="gated", epochs=2),
        out,
        resume=True,
        on_step=lambda *a: steps.append(a),
    )
    assert steps == []
    assert again.genotype == first.genotype
    assert len(again.metrics) == 2 and len(read_metrics(out)[1]) == 2
    assert len(read_alphas(out)) == 2


def test_resume_refuses_a_different_config(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=2), out, on_epoch=stop_after(1))
    with pytest.raises(InputError, match=r"--resume with settings that differ from .*: lam"):
        run(tiny_config(mode="gated", epochs=2, lam=2.0), out, resume=True)
    with pytest.raises(InputError, match=r"differ.*epochs"):
        run(tiny_config(mode="gated", epochs=3), out, resume=True)
    assert load_checkpoint(out)[1]["epoch"] == 1  # untouched


@pytest.mark.slow
def test_resume_drops_the_rows_of_an_epoch_that_has_no_checkpoint(tmp_path):
    """Metrics and α are written before the checkpoint: rows past it are redone, not kept."""
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run(tiny_config(mode="gated", epochs=2), a)
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=2), b, on_epoch=stop_after(1))
    with (b / "metrics.csv").open("a") as f:  # a crash after these writes, before the save
        f.write("2," + ",".join(["0.5"] * (len(FIELDS) - 1)) + "\n")
    with (b / "alphas.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 2, "normal": [[0.0]], "reduction": [[0.0]]}) + "\n")
    rb = run(tiny_config(mode="gated", epochs=2), b, resume=True)
    assert_same_run(a, b, ra, rb)


def test_resume_refuses_a_corrupt_config_file(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(Stop):
        run(tiny_config(mode="gated", epochs=2), out, on_epoch=stop_after(1))
    (out / "config.json").write_text('{"space": "lenna", ')
    with pytest.raises(InputError, match=r"config\.json"):
        run(tiny_config(mode="gated", epochs=2), out, resume=True)


def test_resume_refuses_a_folder_without_a_search(tmp_path):
    with pytest.raises(InputError, match="holds no search to resume"):
        run(tiny_config(mode="gated"), tmp_path / "nothing", resume=True)


def test_a_non_empty_folder_needs_resume(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not an empty folder; use --resume"):
        run(tiny_config(mode="gated"), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        run(tiny_config(mode="gated"), f)


# ---- checkpoints ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch gated run (read-only: copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "r"
    with one_thread():
        run(tiny_config(mode="gated", epochs=2), out)
    return out


def test_a_checkpoint_holds_no_pickle(finished, tmp_path, monkeypatch):
    for p in finished.iterdir():
        head = p.read_bytes()[:4]
        assert head[:1] != b"\x80" and head != b"PK\x03\x04", p.name  # pickle, torch.save zip
    json.loads((finished / "checkpoint.json").read_text())

    def refuse(*a, **kw):
        raise AssertionError("unpickling during resume")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(mod, name, refuse)
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    _, meta = load_checkpoint(out)
    assert meta["epoch"] == 2 and meta["token"] in meta["weights"]
    run(tiny_config(mode="gated", epochs=2), out, resume=True)


def test_only_the_newest_weights_file_is_kept(tmp_path):
    t = {"x": torch.arange(3.0)}
    save_checkpoint(tmp_path, t, {"epoch": 1})
    first = weight_files(tmp_path)
    save_checkpoint(tmp_path, {"x": torch.arange(4.0)}, {"epoch": 2})
    second = weight_files(tmp_path)
    assert len(first) == len(second) == 1 and first != second
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["epoch"] == 2 and torch.equal(tensors["x"], torch.arange(4.0))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("tear", "needle"),
    [
        (lambda f: [p.unlink() for p in weight_files(f)], "malformed checkpoint"),
        (lambda f: (f / "checkpoint.json").write_text("{torn"), "malformed checkpoint"),
        (lambda f: (f / "checkpoint.json").write_text("[]"), "malformed checkpoint"),
        (lambda f: weight_files(f)[0].write_bytes(b"\x00" * 5), "malformed checkpoint"),
        (lambda f: (f / "checkpoint.json").unlink(), "has no checkpoint to resume from"),
    ],
    ids=["no_weights", "bad_json", "json_list", "bad_weights", "no_json"],
)
def test_a_torn_checkpoint_is_refused(finished, tmp_path, tear, needle):
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    tear(out)
    with pytest.raises(InputError, match=needle):
        load_checkpoint(out)
    if needle != "has no checkpoint to resume from":
        with pytest.raises(InputError, match=needle):
            run(tiny_config(mode="gated", epochs=2), out, resume=True)


def test_weights_of_another_checkpoint_are_refused(tmp_path):
    save_checkpoint(tmp_path, {"x": torch.zeros(1)}, {"epoch": 1})
    old = weight_files(tmp_path)[0]
    keep = tmp_path / "old.safetensors"
    shutil.copy(old, keep)
    save_checkpoint(tmp_path, {"x": torch.ones(1)}, {"epoch": 2})
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    shutil.copy(keep, tmp_path / meta["weights"])  # the JSON now names the wrong tensors
    with pytest.raises(InputError, match="do not belong together"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_of_another_network_is_refused(finished, tmp_path):
    other = tmp_path / "darts"
    run(tiny_config("darts", mode="gated", epochs=2), other)
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    for p in weight_files(out):
        p.unlink()
    for p in [other / "checkpoint.json", *weight_files(other)]:
        shutil.copy(p, out / p.name)
    with pytest.raises(InputError, match="checkpoint does not fit this search"):
        run(tiny_config(mode="gated", epochs=2), out, resume=True)


def test_flatten_and_unflatten_optimiser_states():
    torch.manual_seed(0)
    p = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    adam = torch.optim.Adam(p, 0.1, betas=(0.5, 0.999))
    sgd = torch.optim.SGD(p, 0.1, momentum=0.9)
    for _ in range(2):
        for opt in (adam, sgd):
            opt.zero_grad()
            sum((x**2).sum() for x in p).backward()
            opt.step()
    for name, opt, fresh in (
        ("a_opt", adam, torch.optim.Adam(p, 0.5)),
        ("w_opt", sgd, torch.optim.SGD(p, 0.5, momentum=0.1)),
    ):
        tensors, rest = flatten_state(name, opt.state_dict())
        assert all(k.startswith(name + ".") for k in tensors)
        rest = json.loads(json.dumps(rest))  # the rest is plain JSON
        other = {"zz.0.x": torch.zeros(1)}  # another optimiser's tensors are ignored
        fresh.load_state_dict(unflatten_state(name, {**tensors, **other}, rest))
        want, got = opt.state_dict(), fresh.state_dict()
        assert json.loads(json.dumps(want["param_groups"])) == json.loads(
            json.dumps(got["param_groups"])
        )
        assert want["state"].keys() == got["state"].keys()
        for i, entry in want["state"].items():
            for k, v in entry.items():
                assert torch.equal(torch.as_tensor(got["state"][i][k]), torch.as_tensor(v)), k


@pytest.mark.parametrize("epoch", [99, -1, 0, "x"])
def test_a_checkpoint_with_an_impossible_epoch_is_refused(finished, tmp_path, epoch):
    """Issue 25, D11: epoch 99 after 2 of 2 epochs gave a genotype that said 99 epochs."""
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    meta = json.loads((out / "checkpoint.json").read_text())
    meta["epoch"] = epoch
    (out / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="checkpoint does not fit this search"):
        run(tiny_config(mode="gated", epochs=2), out, resume=True)


def test_a_malformed_metrics_row_names_the_run_folders_file(tmp_path):
    from lenna.search.folder import truncate

    (tmp_path / "metrics.csv").write_text("epoch,w_acc\n1,0.5\nx,0.6\n")
    with pytest.raises(InputError, match=r"metrics\.csv: a malformed row"):
        truncate(tmp_path, 1)
