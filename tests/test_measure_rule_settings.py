"""A dataset stores every setting of its stopping rule, defaults included, so a LENNA whose
defaults changed continues a file as it began (``lenna measure``) or says why it will not."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest
from measure_helpers import (
    FAST_RULE,
    all_text,
    count_rows,
    make_dataset,
    one_line_error,
    tiny_config,
)
from typer.testing import CliRunner

from lenna.cli import app
from lenna.demo.pipeline import measure_config
from lenna.demo.plan import QUICK
from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import fingerprint
from lenna.measure.rules import CIRule
from lenna.measure.runner import open_dataset, run_measurement
from lenna.measure.store import Dataset

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()


def _meta(db) -> dict:
    with Dataset.open(db) as ds:
        return ds.meta


def _set_meta(db, key: str, value) -> None:
    """Edit the file as another LENNA would have written it (straight SQL, no LENNA code)."""
    con = sqlite3.connect(db)
    if value is None:
        con.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
    con.commit()
    con.close()


def test_a_new_file_stores_every_setting_of_its_rule():
    ci = CIRule(control=False, reject=0.0, name="ci", **FAST_RULE)
    expected = {k: v for k, v in dataclasses.asdict(ci).items() if k != "name"}
    assert MeasureConfig(rule="ci", rule_params=dict(FAST_RULE)).rule_settings() == expected
    assert expected["passes"] == 3 and expected["q"] == 0.0  # defaults, not asked for, included


def test_a_file_begun_under_other_defaults_continues_with_its_own(tmp_path):
    db = make_dataset(tmp_path / "d.db", 0)
    settled = _meta(db)["rule_settings"]
    assert settled == MeasureConfig(rule="ci", rule_params=dict(FAST_RULE)).rule_settings()
    _set_meta(db, "rule_settings", {**settled, "passes": 2})  # begun when the default was 2
    # the API, with today's default (3 passes), is refused, saying which setting and why
    with pytest.raises(InputError, match="passes 2 in the file, 3 now"):
        run_measurement(db, tiny_config(), 1)
    # `lenna measure` continues with the file's own settings: 2 passes per reset
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "2"])
    assert result.exit_code == 0, all_text(result)
    with Dataset.open(db) as ds:
        df = ds.samples()
    assert len(df) == 2 and (df["passes"] == 2 * df["resets"]).all()
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert info["rule_settings"]["passes"] == 2
    # and so does the API when asked for the same settings
    same = tiny_config(measure=MeasureConfig(rule="ci", rule_params={**FAST_RULE, "passes": 2}))
    assert run_measurement(db, same, 3) == 3


def test_a_file_from_before_rule_settings_resumes_as_before(tmp_path):
    db = make_dataset(tmp_path / "old.db", 1)
    _set_meta(db, "rule_settings", None)
    assert run_measurement(db, tiny_config(), 2) == 2
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "3"])
    assert result.exit_code == 0, all_text(result)
    assert "rule_settings" not in _meta(db)  # resuming adds rows, not settings it cannot know
    other = tiny_config(measure=MeasureConfig(rule="ci", rule_params={**FAST_RULE, "passes": 2}))
    with pytest.raises(InputError, match=r"other settings \(rule_params "):
        run_measurement(db, other, 4)  # without stored settings, asked-for params still count


def test_the_api_compares_what_the_rule_does_not_how_it_was_asked(tmp_path):
    db = make_dataset(tmp_path / "d.db", 1)  # asked for FAST_RULE only: 3 passes by default
    explicit = tiny_config(measure=MeasureConfig(rule="ci", rule_params={**FAST_RULE, "passes": 3}))
    assert run_measurement(db, explicit, 2) == 2


def test_another_rule_or_a_setting_unknown_to_the_file_is_one_line_telling_to_start_anew(
    tmp_path,
):
    db = make_dataset(tmp_path / "d.db", 0)
    other_rule = ["measure", "--out", str(db), "-n", "1", "--rule", "seed"]
    one_line_error(runner.invoke(app, other_rule), "rule ci in the file, seed now")
    settled = _meta(db)["rule_settings"]
    del settled["max_rejected"]  # written by a LENNA whose rule had no such setting
    _set_meta(db, "rule_settings", settled)
    result = runner.invoke(app, ["measure", "--out", str(db), "-n", "1"])
    message = one_line_error(result, "rule settings: max_rejected None in the file, 0.05 now")
    assert "write to a new file" in message and count_rows(db) == 0


def test_a_demo_folder_measured_with_other_rule_settings_is_refused(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    cfg = measure_config(QUICK)
    m = cfg.measure
    db = out / "latency.db"
    open_dataset(db, cfg, fingerprint(m.device, m.threads, m.dtype, m.batch), False).close()
    _set_meta(db, "rule_settings", {**_meta(db)["rule_settings"], "passes": 2})
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    one_line_error(result, "holds a demo measured with other settings; use another --out")
