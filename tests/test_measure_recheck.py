"""``lenna dataset recheck``: rows measured again as the file measured them, compared with their
stored labels, the summary kept in the file; refusals in one line."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest
from measure_helpers import make_dataset, one_line_error, rows
from synthetic import make_synthetic
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure import runner as runner_mod
from lenna.measure.recheck import RECHECKS_KEY, recheck
from lenna.measure.reference import Calibration
from lenna.measure.store import Dataset

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_thread")
CALIBRATION = {"reference_ms": 1.25, "reference_ratios": {"16x16": 1.0, "32x32": 3.5}}


def slower_at_8(factor: float = 1.10):
    """A fake measurement: the stored label, ``factor`` × at resolution 8 (the drift seen on a
    shared host: one shape slower, another not); it records what it was asked to measure."""
    calls = []

    def measure(space, cfg, spec, index, cal):
        calls.append((index, spec, cfg, cal))
        stored = rows(measure.path)[index]
        return SimpleNamespace(latency_ms=stored * (factor if spec.resolution == 8 else 1.0))

    measure.calls = calls
    return measure


@pytest.fixture
def synthetic(tmp_path):
    path = make_synthetic(tmp_path / "s.db", n=60, resolutions=(16, 8))
    with Dataset.open(path) as ds:  # a normalised file's stored calibration
        for key, value in CALIBRATION.items():
            ds.set_meta(key, value)
    return path


def test_rows_are_measured_as_sampled_and_compared(synthetic):
    fake = slower_at_8()
    fake.path = synthetic
    out = recheck(synthetic, n=12, seed=3, measure=fake)
    assert len(out) == 12 and [r.sample_index for r in out] == sorted(r.sample_index for r in out)
    with Dataset.open(synthetic, readonly=True) as ds:
        df = ds.samples().set_index("sample_index")
    for (index, spec, _, cal), r in zip(fake.calls, out, strict=True):
        assert index == r.sample_index
        assert cal == Calibration(CALIBRATION["reference_ms"], CALIBRATION["reference_ratios"])
        assert (spec.block_type, spec.channels, spec.resolution) == (
            df.loc[index, "block_type"],
            df.loc[index, "channels"],
            df.loc[index, "resolution"],
        )
        assert r.stored_ms == pytest.approx(df.loc[index, "latency_ms"])
        assert r.change == pytest.approx(0.10 if r.resolution == 8 else 0.0)
        assert r.hours_since is not None and 0 <= r.hours_since < 1


def test_the_summary_is_kept_in_the_file_per_recheck(synthetic):
    fake = slower_at_8()
    fake.path = synthetic
    recheck(synthetic, n=10, seed=0, measure=fake)
    recheck(synthetic, rows=[1, 2, 3], measure=fake)
    with Dataset.open(synthetic, readonly=True) as ds:
        checks = ds.meta[RECHECKS_KEY]
    assert [c["rows"] for c in checks] == [10, 3]
    first = checks[0]
    assert set(first["by_resolution"]) == {"8", "16"}  # both resolutions were drawn
    assert first["by_resolution"]["8"] == pytest.approx(0.10)
    assert first["by_resolution"]["16"] == pytest.approx(0.0)
    assert first["seed"] == 0 and len(first["sample_indices"]) == 10
    assert checks[1]["seed"] is None and checks[1]["sample_indices"] == [1, 2, 3]
    assert first["max_abs_change"] == pytest.approx(0.10)
    assert 0 <= first["within_5"] <= 1 and "time" in first


def test_the_choice_is_seeded_and_leaves_flagged_rows_out(synthetic):
    con = sqlite3.connect(synthetic)
    con.execute("UPDATE samples SET drift_flag = 1 WHERE sample_index < 30")
    con.commit()
    con.close()
    fake = slower_at_8()
    fake.path = synthetic
    a = [r.sample_index for r in recheck(synthetic, n=8, seed=5, measure=fake)]
    b = [r.sample_index for r in recheck(synthetic, n=8, seed=5, measure=fake)]
    c = [r.sample_index for r in recheck(synthetic, n=8, seed=6, measure=fake)]
    assert a == b and a != c
    assert min(a + c) >= 30


def test_another_machine_or_missing_rows_are_refused(synthetic):
    fake = slower_at_8()
    fake.path = synthetic
    with pytest.raises(InputError, match="no rows"):
        recheck(synthetic, rows=[5, 9999], measure=fake)
    with pytest.raises(InputError, match=r"1\.\.1000"):
        recheck(synthetic, n=0, measure=fake)
    with Dataset.open(synthetic) as ds:
        ds.set_meta("fingerprint", {**ds.meta["fingerprint"], "hash": "0123456789ab"})
    with pytest.raises(InputError, match="another machine"):
        recheck(synthetic, n=3, measure=fake)
    assert not fake.calls  # refused before measuring anything


def test_the_files_own_rule_settings_are_used(synthetic):
    with Dataset.open(synthetic) as ds:
        settled = {**ds.meta.get("rule_settings", {}), "min_resets": 7, "max_resets": 9}
        ds.set_meta("rule_settings", settled)
    fake = slower_at_8()
    fake.path = synthetic
    recheck(synthetic, n=2, measure=fake)
    cfg = fake.calls[0][2]
    assert cfg.measure.rule_params["min_resets"] == 7 and cfg.measure.rule_params["max_resets"] == 9


def test_rows_not_sampled_here_or_not_the_samplers_are_refused(synthetic):
    fake = slower_at_8()
    fake.path = synthetic

    def sql(statement: str) -> None:
        con = sqlite3.connect(synthetic)
        con.execute(statement)
        con.commit()
        con.close()

    sql("INSERT INTO fingerprints VALUES ('feedfacecafe', '{}')")
    sql("UPDATE samples SET fingerprint = 'feedfacecafe' WHERE sample_index = 4")
    with pytest.raises(InputError, match="not sampled on this machine"):
        recheck(synthetic, rows=[3, 4], measure=fake)
    chosen = [r.sample_index for r in recheck(synthetic, n=60, measure=fake)]
    assert 4 not in chosen and len(chosen) == 59  # the foreign row is never drawn
    sql("UPDATE samples SET channels = channels + 1 WHERE sample_index = 6")
    with pytest.raises(InputError, match="not the block its sampler draws"):
        recheck(synthetic, rows=[6], measure=fake)


def test_a_file_being_measured_is_refused(synthetic):
    fake = slower_at_8()
    fake.path = synthetic
    with Dataset.open(synthetic) as writer:
        writer.lock_for_writing()
        with pytest.raises(InputError):
            recheck(synthetic, n=2, measure=fake)
    assert not fake.calls


def test_a_normalised_file_without_its_calibration_is_refused(synthetic):
    con = sqlite3.connect(synthetic)
    con.execute("DELETE FROM meta WHERE key = 'reference_ms'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="no stored calibration"):
        recheck(synthetic, n=2, measure=slower_at_8())


def test_cli_prints_rows_and_summary_and_info_lists_it(synthetic, monkeypatch):
    fake = slower_at_8()
    fake.path = synthetic
    monkeypatch.setattr(runner_mod, "measure_sample", fake)
    res = runner.invoke(app, ["dataset", "recheck", str(synthetic), "-n", "4"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("row ")]) == 4
    assert "moved a median" in lines[-1]
    res = runner.invoke(app, ["dataset", "recheck", str(synthetic), "--rows", "0,7", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["sample_index"] for r in doc["rows"]] == [0, 7] and doc["summary"]["rows"] == 2
    info = runner.invoke(app, ["dataset", "info", str(synthetic)])
    assert info.output.count("labels measured again") == 2
    info = json.loads(runner.invoke(app, ["dataset", "info", str(synthetic), "--json"]).stdout)
    assert [c["rows"] for c in info["label_rechecks"]] == [4, 2]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--rows", "3,x"], "--rows"),
        (["--rows", "-1"], "--rows"),
        (["-n", "0"], "1..1000"),
        (["--rows", "4000"], "no rows"),
        (["--seed", "-1"], "seed"),
        (["--rows", "1", "-n", "5"], "--rows and -n exclude each other"),
        (["--rows", ""], "--rows"),
    ],
)
def test_cli_bad_input_is_one_line(synthetic, args, needle):
    res = runner.invoke(app, ["dataset", "recheck", str(synthetic), *args])
    one_line_error(res, needle)


def test_cli_missing_file_is_one_line(tmp_path):
    res = runner.invoke(app, ["dataset", "recheck", str(tmp_path / "none.db")])
    one_line_error(res, "no dataset")


def test_a_real_row_measured_again_is_the_same_block(tmp_path):
    path = make_dataset(tmp_path / "d.db", 3)
    stored = rows(path)
    out = recheck(path, rows=[0, 2])
    assert [r.sample_index for r in out] == [0, 2]
    for r in out:
        assert r.stored_ms == pytest.approx(stored[r.sample_index])
        # the same tiny block at the file's calibrated speed: the same magnitude (the fast
        # rule stops at ±50 %, so only a gross mismatch of block or scale fails this)
        assert 1 / 3 < r.again_ms / r.stored_ms < 3
