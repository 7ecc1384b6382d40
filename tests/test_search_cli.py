"""`lenna search`, `lenna evaluate-arch`, `lenna sweep`: tiny happy paths, one-line refusals."""

import json
import signal
import subprocess
from dataclasses import replace

import pytest
from measure_helpers import LENNA_SCRIPT, all_text, one_line_error
from search_helpers import FAST_RULE, cheap_genotype, predictor_folder
from typer.testing import CliRunner

import lenna.cli.evaluate_arch as cli_evaluate_arch
import lenna.cli.search as cli_search
import lenna.search.verify as verify
from lenna.cli import app
from lenna.folder_lock import held_folder
from lenna.measure.config import MeasureConfig
from lenna.measure.runner import Interrupted
from lenna.search.config import SearchConfig
from lenna.search.folder import write_config
from lenna.search.genotype import Genotype

pytestmark = pytest.mark.usefixtures("single_thread")

runner = CliRunner()

TINY = ["--data", "synthetic", "--limit", "32", "--epochs", "1", "--batch", "8", "--cells", "2"]


def search_args(out, *extra, space="lenna"):
    return [
        "search",
        "--out",
        str(out),
        "--space",
        space,
        "--predictor",
        str(predictor_folder(space)),
        "--lam",
        "1",
        "--mode",
        "gated",
        *TINY,
        *extra,
    ]


@pytest.fixture
def fast_measure(monkeypatch):
    """Every measurement the commands make uses the quick rule (3..5 resets, ±50 %)."""

    def make(device="cpu", threads=1, **kw):
        return MeasureConfig(rule="ci", rule_params=dict(FAST_RULE), device=device, threads=threads)

    monkeypatch.setattr(verify, "MeasureConfig", make)  # the API's default config

    def for_genotype(genotype, device=None, threads=None, backend=None):
        cfg = make(device or "cpu", threads or 1)
        return cfg if backend in (None, cfg.backend) else replace(cfg, backend=backend)

    # what the CLI times with
    monkeypatch.setattr(cli_evaluate_arch, "measure_config_for", for_genotype)
    monkeypatch.setattr(verify, "measure_config_for", for_genotype)  # and a sweep's evaluations


@pytest.fixture
def genotype_file(tmp_path):
    return cheap_genotype("lenna").save(tmp_path / "genotype.json")


def strict_json(text):
    """JSON as the standard defines it: NaN and Infinity are not numbers there."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# ---- search -----------------------------------------------------------------------------
@pytest.mark.slow
def test_search_writes_a_run_and_resumes_it(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, search_args(out, "--arch-lr", "0.01"))
    assert result.exit_code == 0, all_text(result)
    assert "derived lenna architecture (λ = 1)" in all_text(result)
    assert "predicted" in all_text(result)
    g = Genotype.load(out / "genotype.json")
    assert g.lam == 1.0 and g.predicted_ms > 0
    cfg = SearchConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert (cfg.a_lr, cfg.limit, cfg.mode, cfg.net.cells, cfg.net.channels) == (
        0.01,
        32,
        "gated",
        2,
        8,
    )
    again = runner.invoke(app, [*search_args(out, "--arch-lr", "0.01"), "--resume"])
    assert again.exit_code == 0, all_text(again)
    assert Genotype.load(out / "genotype.json") == g


@pytest.mark.slow
def test_search_limit_zero_means_all_images(tmp_path):
    out = tmp_path / "run"
    args = [a if a != "32" else "0" for a in search_args(out)]
    result = runner.invoke(app, [*args, "--epochs", "1"])
    assert result.exit_code == 0, all_text(result)
    assert json.loads((out / "config.json").read_text())["limit"] is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--lam", "-1"], "λ must be a finite number >= 0, got -1.0"),
        (["--lam", "nan"], "λ must be a finite number >= 0, got nan"),
        (["--lam", "inf"], "λ must be a finite number >= 0"),
        (["--mode", "fixed"], "a search needs mode weighted or gated"),
        (["--form", "cube"], "unknown latency form 'cube'"),
        (["--space", "nasnet"], "unknown space 'nasnet'"),
        (["--data", "cifar10:/nonexistent"], "cifar10 folder not found: /nonexistent"),
        (["--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--cells", "0"], "network cells must be >= 1"),
        (["--lam", "abc"], "Invalid value for '--lam'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "_".join(v),
)
def test_search_refuses_bad_options_in_one_line(tmp_path, extra, needle):
    out = tmp_path / "run"
    result = runner.invoke(app, [*search_args(out), *extra])
    one_line_error(result, needle)
    assert not out.exists()


def test_search_refuses_lambda_without_a_predictor(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["search", "--out", str(out), "--lam", "0.5", *TINY])
    one_line_error(result, "λ > 0 needs a latency predictor (--predictor MODEL)")
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--predictor", str(predictor_folder("darts"))],
            "is a model of space 'darts', not 'lenna'",
        ),
        (["--predictor", str(predictor_folder("lenna", "gbdt"))], "not differentiable"),
        (["--channels", "4"], "cell 0 (normal, 4 ch, 16 px) lies outside the predictor's"),
        (["--target-ms", "-1"], "target latency must be a positive number of ms"),
    ],
    ids=["other_space", "gbdt", "out_of_range", "bad_target"],
)
@pytest.mark.filterwarnings("ignore::lenna.predict.OutOfRange")
def test_search_refuses_a_predictor_that_does_not_fit_in_one_line(tmp_path, extra, needle):
    result = runner.invoke(app, [*search_args(tmp_path / "run"), *extra])
    one_line_error(result, needle)


def test_the_corrected_command_can_reuse_the_refused_out_folder(tmp_path):
    out = tmp_path / "run"
    other = ["--predictor", str(predictor_folder("darts"))]
    one_line_error(runner.invoke(app, [*search_args(out), *other]), "model of space 'darts'")
    result = runner.invoke(app, search_args(out))
    assert result.exit_code == 0, all_text(result)


@pytest.mark.slow
def test_a_sweep_into_a_folder_another_sweep_writes_is_one_line(tmp_path):
    out = tmp_path / "s"
    with held_folder(out, "sweep"):
        one_line_error(
            runner.invoke(app, sweep_args(out, "0")), f"{out} is being written by another sweep"
        )
        assert out.is_dir()  # the holder's folder is not removed by the refused run


@pytest.mark.slow
def test_console_script_out_of_range_refusal_is_one_line(tmp_path):
    """Run for real: a warning printed before the error would be a second stderr line."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(LENNA_SCRIPT), *search_args(out), "--channels", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "lies outside the predictor's training ranges" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_search_refuses_a_missing_predictor_folder(tmp_path):
    result = runner.invoke(app, [*search_args(tmp_path / "run"), "--predictor", str(tmp_path)])
    one_line_error(result, "is not a LENNA model")


def test_search_refuses_a_used_folder_and_a_different_resume(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, search_args(out)).exit_code == 0
    one_line_error(runner.invoke(app, search_args(out)), "exists and is not an empty folder")
    result = runner.invoke(app, [*search_args(out), "--resume", "--lam", "2"])
    one_line_error(result, "--resume: --lam differ from the run's")
    one_line_error(
        runner.invoke(app, [*search_args(tmp_path / "new"), "--resume"]),
        "holds no search to resume",
    )


@pytest.mark.slow
def test_resume_needs_only_out_and_continues_the_stored_run(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, search_args(out)).exit_code == 0
    before = json.loads((out / "genotype.json").read_text())
    (out / "genotype.json").unlink()
    result = runner.invoke(app, ["search", "--out", str(out), "--resume"])  # no other option
    assert result.exit_code == 0, all_text(result)
    assert json.loads((out / "genotype.json").read_text())["cells"] == before["cells"]


def test_search_resume_with_a_corrupt_config_file_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, search_args(out)).exit_code == 0
    (out / "config.json").write_text("{torn")
    one_line_error(runner.invoke(app, [*search_args(out), "--resume"]), "config.json")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
def test_an_interrupted_search_says_how_to_continue(tmp_path, monkeypatch, signum, code):
    def interrupted(cfg, out, **kw):
        write_config(out, cfg)  # the run folder is written: it can be resumed
        raise Interrupted(signum)

    monkeypatch.setattr(cli_search, "run_search", interrupted)
    result = runner.invoke(app, search_args(tmp_path / "run"))
    text = all_text(result)
    assert result.exit_code == code, text
    assert "interrupted: finished epochs are saved in" in text and "--resume" in text
    assert "Traceback" not in text


def test_a_search_interrupted_before_its_folder_does_not_offer_resume(tmp_path, monkeypatch):
    def interrupted(*a, **kw):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(cli_search, "run_search", interrupted)
    out = tmp_path / "run"
    result = runner.invoke(app, search_args(out))
    text = all_text(result)
    assert result.exit_code == 130, text
    assert "nothing to resume" in text and "--resume" not in text
    assert not out.exists()


# ---- evaluate-arch ----------------------------------------------------------------------
KEYS = {"measured_ms", "measured_cells_ms", "predicted_ms", "accuracy", "params"}


def test_evaluate_arch_json_without_training_is_valid_json(genotype_file, fast_measure):
    result = runner.invoke(
        app, ["evaluate-arch", str(genotype_file), "--data", "synthetic", "--epochs", "0", "--json"]
    )
    assert result.exit_code == 0, all_text(result)
    res = strict_json(result.stdout)
    assert set(res) >= KEYS
    assert res["accuracy"] is None  # not trained: no accuracy (NaN is not JSON)


def test_evaluate_arch_json_after_training(genotype_file, fast_measure):
    args = ["evaluate-arch", str(genotype_file), "--data", "synthetic", "--limit", "32"]
    result = runner.invoke(app, [*args, "--epochs", "1", "--json"])
    assert result.exit_code == 0, all_text(result)
    res = strict_json(result.stdout)
    assert set(res) >= KEYS
    assert 0.0 <= res["accuracy"] <= 1.0
    assert res["params"] > 0 and res["measured_ms"] > 0
    assert res["measured_cells_ms"] == pytest.approx(sum(res["measured_per_cell_ms"]))
    assert res["predicted_ms"] is None and res["epochs"] == 1


def test_evaluate_arch_prints_a_table(genotype_file, fast_measure):
    g = Genotype.load(genotype_file)
    g.predicted_ms = 0.5
    g.save(genotype_file)
    result = runner.invoke(
        app, ["evaluate-arch", str(genotype_file), "--data", "synthetic", "--epochs", "0"]
    )
    assert result.exit_code == 0, all_text(result)
    assert "lenna architecture, λ = 0.5" in result.stdout
    assert "0.500" in result.stdout  # the predicted latency


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such genotype file"),
        ("{broken", "is not a genotype file"),
        ('{"format": 1}', "is not a genotype file (no 'space')"),
    ],
    ids=["missing", "broken", "incomplete"],
)
def test_evaluate_arch_refuses_bad_genotype_files(tmp_path, content, needle):
    path = tmp_path / "genotype.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["evaluate-arch", str(path), "--data", "synthetic"])
    one_line_error(result, needle)


def test_evaluate_arch_refuses_an_unknown_op(genotype_file):
    d = json.loads(genotype_file.read_text())
    d["cells"]["normal"][2] = "7x7_Conv"
    genotype_file.write_text(json.dumps(d))
    result = runner.invoke(app, ["evaluate-arch", str(genotype_file), "--data", "synthetic"])
    one_line_error(result, "op '7x7_Conv' is not a candidate on normal edge 2")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--epochs", "-1"], "--epochs must be >= 0, got -1"),
        (["--data", "digits", "--epochs", "0"], "takes 1×32² images in 4 classes"),
        (["--data", "cifar10:/nonexistent"], "cifar10 folder not found"),
        (["--measure-device", "tpu"], "unknown device 'tpu'"),
        (["--device", "tpu"], "unknown compute device 'tpu'"),
        (["--measure-threads", "0"], "threads must be from 1 to 1024"),
    ],
    ids=["epochs", "data_mismatch", "data_folder", "measure_device", "device", "threads"],
)
def test_evaluate_arch_refuses_bad_options(genotype_file, extra, needle):
    args = ["evaluate-arch", str(genotype_file), "--data", "synthetic", *extra]
    one_line_error(runner.invoke(app, args), needle)


# ---- sweep ------------------------------------------------------------------------------
def sweep_args(out, lams, *extra):
    return [
        "sweep",
        "--out",
        str(out),
        "--lams",
        lams,
        "--predictor",
        str(predictor_folder("lenna")),
        "--mode",
        "gated",
        "--eval-epochs",
        "0",
        *TINY,
        *extra,
    ]


@pytest.mark.parametrize(
    ("lams", "needle"),
    [
        ("a,b", "--lams must be comma-separated numbers, got 'a,b'"),
        ("0.5,,x", "--lams must be comma-separated numbers"),
        ("0,,1", "--lams has an empty item in '0,,1'"),
        ("0,1,", "--lams has an empty item"),
        ("-1,2", "λ must be finite numbers >= 0, got [-1.0]"),
        ("nan", "λ must be finite numbers >= 0"),
        ("1,1", "each λ once, please"),
        (",", "--lams needs at least one number, got ','"),
    ],
)
def test_sweep_refuses_bad_lams_in_one_line(tmp_path, lams, needle):
    out = tmp_path / "s"
    one_line_error(runner.invoke(app, sweep_args(out, lams)), needle)
    assert not out.exists()


def test_sweep_needs_a_predictor(tmp_path):
    result = runner.invoke(app, ["sweep", "--out", str(tmp_path / "s"), "--lams", "0,1", *TINY])
    one_line_error(result, "a sweep needs --predictor MODEL")


@pytest.mark.slow
def test_sweep_runs_and_is_skipped_when_run_again(tmp_path, fast_measure):
    out = tmp_path / "s"
    result = runner.invoke(app, sweep_args(out, "0.5,2"))
    assert result.exit_code == 0, all_text(result)
    assert "table and Pareto figure in" in all_text(result)
    assert (out / "sweep.csv").read_text().count("\n") == 3
    assert {p.name for p in out.iterdir()} >= {"lam_0.5", "lam_2", "pareto.png", "sweep.json"}
    stamp = (out / "lam_2" / "result.json").stat().st_mtime_ns
    again = runner.invoke(app, sweep_args(out, "0.5,2"))
    assert again.exit_code == 0, all_text(again)
    assert (out / "lam_2" / "result.json").stat().st_mtime_ns == stamp
    assert "epoch 1" not in all_text(again)


# ---- latency budget -----------------------------------------------------------------------
def budget_args(out, budget, *extra):
    args = search_args(out, "--budget-ms", str(budget), "--fixed-ms", "0.05", *extra)
    i = args.index("--lam")
    return args[:i] + args[i + 2 :]  # no λ: the budget replaces it


def budget_range():
    """The fastest and slowest derivable tiny networks, as the CLI's search sees them."""
    from search_helpers import term_for, tiny_net

    from lenna.search.budget import extreme_network

    term = term_for(tiny_net("lenna", num_classes=4), budget_ms=1.0, fixed_ms=0.05)
    return extreme_network(term)[1], extreme_network(term, fastest=False)[1]


def test_search_with_a_budget_states_the_whole_network(tmp_path):
    fastest, slowest = budget_range()
    budget = (fastest + slowest) / 2
    out = tmp_path / "run"
    result = runner.invoke(app, budget_args(out, f"{budget:.6f}"))
    assert result.exit_code == 0, all_text(result)
    text = " ".join(all_text(result).split())
    assert f"budget {float(f'{budget:.6f}'):g} ms" in text and "for the whole network" in text
    saved = json.loads((out / "genotype.json").read_text())
    assert saved["predicted_network_ms"] <= budget + 1e-6
    assert saved["predicted_fixed_ms"] == 0.05
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"multiplier", "derived_ms", "expected_network_ms"} <= set(header)


def test_search_refuses_an_impossible_budget_in_one_line(tmp_path):
    fastest, _ = budget_range()
    out = tmp_path / "run"
    result = runner.invoke(app, budget_args(out, f"{fastest / 2:.6f}"))
    one_line_error(result, "no derivable network meets")
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--lam", "1"], "a latency budget replaces --lam"),
        (["--budget-lr", "0"], "--budget-lr (budget_lr) must be > 0"),
        (["--form", "log"], "a latency budget has its own loss"),
    ],
)
def test_search_refuses_bad_budget_options_in_one_line(tmp_path, extra, needle):
    out = tmp_path / "run"
    one_line_error(runner.invoke(app, budget_args(out, "3", *extra)), needle)
    assert not out.exists()


def test_evaluate_arch_json_says_whether_the_budget_was_met(tmp_path, fast_measure):
    g = cheap_genotype("lenna")
    g.predicted_ms, g.predicted_cells_ms, g.predicted_fixed_ms, g.budget_ms = (
        0.5,
        [0.3, 0.2],
        0.1,
        1e6,
    )
    path = g.save(tmp_path / "genotype.json")
    result = runner.invoke(
        app, ["evaluate-arch", str(path), "--data", "synthetic", "--epochs", "0", "--json"]
    )
    assert result.exit_code == 0, all_text(result)
    res = strict_json(result.stdout)
    assert res["budget_ms"] == 1e6 and res["within_budget"] is True
    assert res["measured_ms"] > 0 and res["predicted_network_ms"] == pytest.approx(0.6)


@pytest.mark.slow  # two searches and two verifications: `make test-slow`
def test_sweep_by_budgets_writes_a_folder_per_budget(tmp_path, fast_measure):
    fastest, slowest = budget_range()
    budgets = [fastest + f * (slowest - fastest) for f in (0.4, 0.7)]
    text = ",".join(f"{b:.6f}" for b in budgets)
    args = sweep_args(tmp_path / "s", "0", "--fixed-ms", "0.05")
    i = args.index("--lams")
    args = [*args[:i], "--budgets", text, *args[i + 2 :]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, all_text(result)
    assert "budget sweep" in all_text(result)
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["budget_ms"] for r in rows] == [float(f"{b:.6f}") for b in budgets]
    assert all(r["predicted_network_ms"] <= r["budget_ms"] + 1e-6 for r in rows)
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert {f"budget_{float(f'{b:.6f}'):g}ms" for b in budgets} <= names


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--budgets", "1,2"], "give --lams or --budgets, not both"),
    ],
)
def test_sweep_refuses_lams_and_budgets_together(tmp_path, extra, needle):
    one_line_error(runner.invoke(app, sweep_args(tmp_path / "s", "0", *extra)), needle)


@pytest.mark.parametrize(
    ("budgets", "needle"),
    [("0,2", "budget must be finite numbers > 0"), ("x", "--budgets must be comma-separated")],
)
def test_sweep_refuses_bad_budgets_in_one_line(tmp_path, budgets, needle):
    args = sweep_args(tmp_path / "s", "0")
    i = args.index("--lams")
    args = [*args[:i], "--budgets", budgets, *args[i + 2 :]]
    one_line_error(runner.invoke(app, args), needle)


# ---- one meaning per option across commands (issue 25) -----------------------------------
def test_search_refuses_an_out_whose_parent_is_missing(tmp_path):
    out = tmp_path / "typo" / "run"
    one_line_error(runner.invoke(app, search_args(out)), f"folder {tmp_path / 'typo'} does not")
    assert not (tmp_path / "typo").exists()


def test_sweep_refuses_an_out_whose_parent_is_missing(tmp_path):
    out = tmp_path / "typo" / "s"
    one_line_error(runner.invoke(app, sweep_args(out, "0")), "does not exist")
    assert not (tmp_path / "typo").exists()


def test_evaluate_arch_limit_zero_means_all_images_as_in_search(genotype_file, fast_measure):
    args = ["evaluate-arch", str(genotype_file), "--data", "synthetic", "--epochs", "0"]
    result = runner.invoke(app, [*args, "--limit", "0", "--json"])
    assert result.exit_code == 0, all_text(result)
    assert strict_json(result.stdout)["data"] == "synthetic"
