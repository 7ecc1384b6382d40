"""Figures are written atomically: a failure mid-write leaves the previous figure whole."""

from __future__ import annotations

import errno

import matplotlib.pyplot as plt
import pytest

from lenna.report.figure_file import save_figure


def _fig():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    return fig


@pytest.mark.parametrize(
    ("name", "magic"), [("f.png", b"\x89PNG"), ("f.pdf", b"%PDF"), ("f", b"\x89PNG")]
)
def test_the_format_follows_the_suffix(tmp_path, name, magic):
    out = save_figure(_fig(), tmp_path / name, dpi=50)
    assert out == tmp_path / name and out.read_bytes()[: len(magic)] == magic
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left beside it


def test_a_full_disk_keeps_the_previous_figure_and_names_it(tmp_path, monkeypatch):
    out = tmp_path / "f.png"
    save_figure(_fig(), out, dpi=50)
    before = out.read_bytes()
    fig = _fig()

    def half_written(path, **kw):
        with open(path, "wb") as f:
            f.write(b"\x89PNG truncated")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fig, "savefig", half_written)
    with pytest.raises(OSError, match="No space left") as e:
        save_figure(fig, out, dpi=50)
    assert e.value.filename == str(out)  # the user's file, not the hidden temporary one
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
    assert not plt.fignum_exists(fig.number)  # closed either way
