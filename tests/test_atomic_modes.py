"""Files a user keeps get the usual permissions, whatever library wrote them."""

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lenna.atomic as atomic
from lenna.atomic import replace_files, write_text, write_with


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _usual():
    return 0o644  # under the umask 022 set below


@pytest.fixture(autouse=True)
def umask_022(monkeypatch):
    """A fixed umask, so a file left at safetensors' 0600 cannot pass for the usual mode."""
    monkeypatch.setattr(atomic, "_UMASK", 0o022)


def test_a_new_safetensors_file_gets_the_usual_mode(tmp_path):
    """safetensors creates its files readable by their owner only."""
    path = write_with(tmp_path / "w.safetensors", lambda t: save_file({"x": torch.ones(2)}, str(t)))
    assert _mode(path) == _usual()


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_text(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o640


def test_replace_files_gives_new_files_the_usual_mode(tmp_path):
    folder = tmp_path / "model"

    def write(staging):
        save_file({"x": torch.ones(2)}, str(staging / "weights.safetensors"))
        (staging / "model.json").write_text("{}")

    replace_files(folder, write, ())
    assert {_mode(p) for p in folder.iterdir()} == {_usual()}


def test_a_write_that_fails_names_the_users_file_not_the_temporary_one(tmp_path):
    """The error a user reads (an unwritable folder, a full disk) names the file they asked
    for; the hidden temporary name means nothing to them, and it is gone."""
    path = tmp_path / "w.csv"

    def fail(tmp):
        tmp.write_text("half")  # the disk filled up part-way
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError) as caught:
        write_with(path, fail)
    assert caught.value.filename == str(path) and caught.value.errno == 28
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_names_no_file_gets_the_users_file_named(tmp_path):
    path = tmp_path / "w.parquet"

    def fail(tmp):
        raise OSError(28, "No space left on device")  # pyarrow's way: no file name

    with pytest.raises(OSError) as caught:
        write_with(path, fail)
    assert caught.value.filename == str(path) and caught.value.errno == 28


def test_a_checkpoint_that_cannot_be_written_keeps_the_last_and_names_the_folder(
    tmp_path, monkeypatch
):
    import torch

    import lenna.search.checkpoint as ck

    ck.save_checkpoint(tmp_path, {"w": torch.ones(2)}, {"epoch": 1})
    before = sorted(p.name for p in tmp_path.iterdir())

    def full(tensors, name, metadata=None):
        Path(name).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(OSError, match=r"cannot write a checkpoint in .*the last one is kept"):
        ck.save_checkpoint(tmp_path, {"w": torch.zeros(2)}, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    tensors, meta = ck.load_checkpoint(tmp_path)
    assert meta["epoch"] == 1 and tensors["w"].tolist() == [1.0, 1.0]


def test_a_checkpoint_whose_metadata_cannot_be_written_leaves_nothing_new(tmp_path, monkeypatch):
    import lenna.search.checkpoint as ck

    ck.save_checkpoint(tmp_path, {"w": torch.ones(2)}, {"epoch": 1})
    before = sorted(p.name for p in tmp_path.iterdir())
    real_write = Path.write_text

    def full(self, text, *a, **k):
        if self.name.endswith(".tmp"):
            real_write(self, text[:3])
            raise OSError(28, "No space left on device")
        return real_write(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="the last one is kept") as e:
        ck.save_checkpoint(tmp_path, {"w": torch.zeros(2)}, {"epoch": 2})
    monkeypatch.undo()
    assert e.value.errno == 28
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no new weights, no .tmp
    assert ck.load_checkpoint(tmp_path)[1]["epoch"] == 1
