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
        again = stored * (factor if spec.resolution == 8 else 1.0)
        return SimpleNamespace(latency_ms=again, estimate=SimpleNamespace(load=None))

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


# ---- rows measured under load, measured again and replaced ---------------------------------
LOADS = {3: 1.30, 10: 1.20, 20: 1.16, 21: 1.10}  # every other row: NULL (as a synthetic file)


def _set_loads(path):
    con = sqlite3.connect(path)
    con.executemany(
        "UPDATE samples SET load = ? WHERE sample_index = ?", [(v, i) for i, v in LOADS.items()]
    )
    con.commit()
    con.close()


def at_loads(new_loads: dict[int, float]):
    """A fake measurement 12 % above the stored label, at the given load per row."""
    from lenna.measure.block_measure import Measurement
    from lenna.measure.rules import Estimate

    calls = []

    def measure(space, cfg, spec, index, cal):
        calls.append((index, cfg))
        load = new_loads[index]
        est = Estimate(
            rows(measure.path)[index] * 1.12,
            "cv",
            5,
            20,
            0.001,
            True,
            reference_ms=1.0,
            references_ms=[load],
        )
        return Measurement(spec.block_type, spec.channels, spec.resolution, spec.alphas, est, 0.5)

    measure.calls = calls
    return measure


def test_rows_above_a_load_are_measured_again_and_replaced_where_the_new_load_is_lower(synthetic):
    _set_loads(synthetic)
    before = rows(synthetic)
    with Dataset.open(synthetic, readonly=True) as ds:
        old = ds.samples().set_index("sample_index")
    fake = at_loads({3: 1.02, 10: 1.25, 20: 1.05})
    fake.path = synthetic
    out = recheck(synthetic, measure=fake, above_load=1.15, replace_labels=True)
    assert [i for i, _ in fake.calls] == [3, 10, 20]  # 21 is below the bound, NULL rows unknown
    assert all(cfg.measure.max_load == pytest.approx(1.15) for _, cfg in fake.calls)
    assert [r.replaced for r in out] == [True, False, True]  # row 10 ran at a higher load now
    after = rows(synthetic)
    assert after[3] == pytest.approx(before[3] * 1.12) and after[20] == pytest.approx(
        before[20] * 1.12
    )
    assert {i: v for i, v in after.items() if i not in (3, 20)} == {
        i: v for i, v in before.items() if i not in (3, 20)
    }
    with Dataset.open(synthetic, readonly=True) as ds:
        new = ds.samples().set_index("sample_index")
        entry = ds.meta[RECHECKS_KEY][-1]
    assert new.loc[3, "load"] == pytest.approx(1.02) and new.loc[10, "load"] == pytest.approx(1.2)
    assert new.loc[3, "resets"] == 5 and new.loc[3, "created_at"] != old.loc[3, "created_at"]
    for col in ("block_type", "channels", "resolution", "regime", "fingerprint"):
        assert new.loc[3, col] == old.loc[3, col]
    assert new.loc[3, "alphas"] == old.loc[3, "alphas"]
    assert entry["replaced"] == 2 and entry["above_load"] == pytest.approx(1.15)


def test_without_replace_rows_above_a_load_are_only_compared(synthetic):
    _set_loads(synthetic)
    before = rows(synthetic)
    fake = at_loads({3: 1.0, 10: 1.0, 20: 1.0})
    fake.path = synthetic
    out = recheck(synthetic, measure=fake, above_load=1.15)
    assert len(out) == 3 and not any(r.replaced for r in out)
    assert rows(synthetic) == before
    assert all(cfg.measure.max_load == 0.0 for _, cfg in fake.calls)  # the file's own settings


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"replace_labels": True}, "needs --above-load"),
        ({"above_load": 0.5}, "slowdown from 1 to 100"),
        ({"above_load": 1.15, "rows": [3]}, "with --rows"),
        ({"above_load": 1.5}, "no rows sampled here above load 1.5"),
    ],
)
def test_bad_load_choices_are_refused(synthetic, kw, needle):
    _set_loads(synthetic)
    with pytest.raises(InputError, match=needle):
        recheck(synthetic, measure=at_loads({}), **kw)


def test_cli_replaces_loaded_rows_and_says_so(synthetic, monkeypatch):
    _set_loads(synthetic)
    fake = at_loads({3: 1.02, 10: 1.25, 20: 1.05})
    fake.path = synthetic
    monkeypatch.setattr(runner_mod, "measure_sample", fake)
    res = runner.invoke(
        app, ["dataset", "recheck", str(synthetic), "--above-load", "1.15", "--replace"]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.count(", replaced") == 2
    assert "load 1.30 → 1.02" in res.stdout
    assert "rows above load 1.15: 2 labels replaced" in res.stdout.splitlines()[-1]
    one_line_error(
        runner.invoke(
            app, ["dataset", "recheck", str(synthetic), "--above-load", "1.2", "-n", "3"]
        ),
        "--above-load picks the rows itself",
    )


def test_more_loaded_rows_than_a_recheck_takes_are_refused(synthetic, monkeypatch):
    import lenna.measure.recheck as recheck_mod

    _set_loads(synthetic)
    monkeypatch.setattr(recheck_mod, "MAX_ROWS", 2)
    with pytest.raises(InputError, match=r"3 rows above load 1\.15, more than 2"):
        recheck(synthetic, n=1, measure=at_loads({}), above_load=1.15)


def test_cli_replace_without_above_load_is_one_line(synthetic):
    one_line_error(
        runner.invoke(app, ["dataset", "recheck", str(synthetic), "--replace"]),
        "needs --above-load",
    )


def test_a_replaced_row_keeps_a_trace_where_it_had_one_and_names_no_fleet_device(synthetic):
    _set_loads(synthetic)
    con = sqlite3.connect(synthetic)
    con.execute(
        "UPDATE samples SET trace = '{\"values_ms\": [1.0]}', device = 'gpu-3' "
        "WHERE sample_index = 3"
    )
    con.commit()
    con.close()
    fake = at_loads({3: 1.0, 10: 1.0, 20: 1.0})
    fake.path = synthetic
    recheck(synthetic, measure=fake, above_load=1.15, replace_labels=True)
    with Dataset.open(synthetic, readonly=True) as ds:
        new = ds.samples().set_index("sample_index")
    assert new.loc[3, "trace"]["values_ms"] == [] and new.loc[3, "device"] is None
    assert new.loc[10, "trace"] is None  # it had none


def test_an_interrupted_replacement_keeps_its_rows_and_says_which(synthetic):
    from lenna.measure.runner import Interrupted

    _set_loads(synthetic)
    before = rows(synthetic)
    inner = at_loads({3: 1.0, 10: 1.0, 20: 1.0})
    inner.path = synthetic

    def measure(space, cfg, spec, index, cal):
        if index == 10:
            raise Interrupted(2)  # Ctrl-C while the second row is measured
        return inner(space, cfg, spec, index, cal)

    with pytest.raises(Interrupted):
        recheck(synthetic, measure=measure, above_load=1.15, replace_labels=True)
    after = rows(synthetic)
    assert after[3] == pytest.approx(before[3] * 1.12)
    assert after[10] == before[10] and after[20] == before[20]
    with Dataset.open(synthetic, readonly=True) as ds:
        entry = ds.meta[RECHECKS_KEY][-1]
    assert entry["interrupted"] is True and entry["replaced_indices"] == [3]


def test_the_guard_bound_is_never_looser_than_the_files_own(synthetic):
    _set_loads(synthetic)
    with Dataset.open(synthetic) as ds:  # a file measured with the guard at 1.1
        cfg = ds.meta["config"]
        cfg["measure"]["max_load"] = 1.1
        ds.set_meta("config", cfg)
    fake = at_loads({3: 1.0})
    fake.path = synthetic
    recheck(synthetic, measure=fake, above_load=1.2, replace_labels=True)
    assert fake.calls[0][1].measure.max_load == pytest.approx(1.1)
    with Dataset.open(synthetic) as ds:  # a resume moved it to 1.3: L = 1.15 is the stricter
        ds.set_meta("max_load_changes", [{"rows": 60, "max_load": 1.3, "time": "t"}])
    fake = at_loads({10: 1.0, 20: 1.0})
    fake.path = synthetic
    recheck(synthetic, measure=fake, above_load=1.15, replace_labels=True)
    assert fake.calls[0][1].measure.max_load == pytest.approx(1.15)


def test_cli_above_load_with_an_explicit_seed_and_an_interrupted_entry_say_so(synthetic):
    from lenna.cli.dataset import _recheck_line

    one_line_error(
        runner.invoke(
            app, ["dataset", "recheck", str(synthetic), "--above-load", "1.2", "--seed", "0"]
        ),
        "--above-load picks the rows itself",
    )
    s = {"rows": 1, "median_abs_change": 0.1, "max_abs_change": 0.1, "median_change": 0.1}
    line = _recheck_line(s | {"above_load": 1.15, "replaced": 1, "interrupted": True})
    assert line.endswith("1 labels replaced (interrupted)")
