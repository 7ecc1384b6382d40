"""`lenna demo`: bad --out, the report's Markdown → HTML, the gain sentence, and (slow) the
quick demo end to end with the report opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from measure_helpers import one_line_error
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.report.demo_sentences import budget_sentence, gain, gain_sentence
from lenna.report.report_html import markdown_to_html

runner = CliRunner()

# a 1×1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(("flags", "folder"), [([], "demo-out"), (["--quick"], "demo-out-quick")])
def test_the_default_out_keeps_a_quick_demo_apart_from_the_full_one(
    tmp_path, monkeypatch, flags, folder
):
    """As `make demo` and `make demo-quick` do: a quick run in demo-out would make the full
    demo refuse that folder later."""
    from lenna.demo import pipeline

    def stop(out):
        raise InputError(f"would write {out}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "check_out", stop)
    one_line_error(runner.invoke(app, ["demo", *flags]), f"would write {folder}")


def test_demo_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(runner.invoke(app, ["demo", "--quick", "--out", str(f)]), "is a file")


def test_demo_out_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # checked first: otherwise root runs the whole demo
            pytest.skip("running as a user who can write anywhere (root)")
        one_line_error(
            runner.invoke(app, ["demo", "--quick", "--out", str(ro / "sub")]), "not writable"
        )
    finally:
        ro.chmod(0o700)


def test_demo_out_refused_when_the_write_probe_fails(tmp_path, monkeypatch):
    """The same refusal for any user (root included): the probe's OSError becomes one line."""
    real = Path.write_text

    def refuse(self, *args, **kwargs):
        if self.name == ".lenna-write-test":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "out")])
    one_line_error(result, "not writable (Permission denied)")


def test_demo_out_whose_parent_is_missing(tmp_path):
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "typo" / "d")])
    one_line_error(result, f"folder {tmp_path / 'typo'} does not exist")
    assert not (tmp_path / "typo").exists()


def test_demo_out_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(runner.invoke(app, ["demo", "--out", str(f / "sub")]), "not writable")


def _rows(fast_ms: float, fast_acc: float) -> list[dict]:
    return [
        {"lam": 0.0, "measured_cells_ms": 4.0, "measured_ms": 5.0, "accuracy": 0.9, "epochs": 3},
        {
            "lam": 1.0,
            "measured_cells_ms": fast_ms,
            "measured_ms": fast_ms + 1,
            "accuracy": fast_acc,
            "epochs": 3,
        },
    ]


def test_gain_sentence_states_measured_gain_and_cost():
    s = gain_sentence(_rows(2.0, 0.885))
    assert "50 % faster cells" in s
    assert "2.000 ms against 4.000 ms" in s
    assert "-1.50 accuracy points" in s


def test_the_gain_is_stored_as_numbers_the_sentence_states():
    g = gain(_rows(2.0, 0.885))
    assert g["cells_ratio"] == pytest.approx(0.5) and g["network_ratio"] == pytest.approx(0.6)
    assert g["network_speedup"] == pytest.approx(5 / 3)
    assert g["accuracy_change_points"] == pytest.approx(-1.5)
    assert gain(_rows(2.0, 0.885)[:1]) == {}


def test_gain_sentence_is_honest_when_slower():
    s = gain_sentence(_rows(5.0, 0.9))
    assert "no speed gain" in s and "25 % slower" in s


@pytest.mark.parametrize(
    ("measured", "verdict"), [(3.4, "0.97× the budget, so it met it"), (3.8, "so it missed it")]
)
def test_budget_sentence_says_whether_the_measured_network_met_its_budget(measured, verdict):
    row = {"budget_ms": 3.5, "measured_ms": measured, "predicted_network_ms": 3.45, "accuracy": 0.9}
    s = budget_sentence(row)
    assert "within a 3.5 ms budget" in s and f"measured at {measured:.3f} ms" in s
    assert "(predicted 3.450 ms)" in s and verdict in s


def test_budget_sentence_says_why_a_budget_was_refused():
    s = budget_sentence({"budget_ms": 0.1, "refused": "no derivable network meets a 0.1 ms budget"})
    assert s.startswith("A 0.1 ms budget was refused before searching: no derivable network")


def test_html_embeds_images_and_renders_tables(tmp_path):
    fig = tmp_path / "figures" / "a.png"
    fig.parent.mkdir()
    fig.write_bytes(PNG)
    md = "\n".join(
        [
            "# Title",
            "",
            "**bold** and `code` <script>",
            "",
            "| a | b |",
            "|---|---|",
            "| 1 | 2 |",
            "",
            "![alt text](figures/a.png)",
        ]
    )
    page = markdown_to_html(md, {"a": fig}, tmp_path)
    assert "<h1>Title</h1>" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert "&lt;script&gt;" in page  # text is escaped
    assert "<th>a</th>" in page and "<td>2</td>" in page and "---" not in page
    src = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(src) == PNG
    assert "figures/a.png" not in page  # self-contained: no file references


CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const narrowest = Math.min(...imgs.map(i => i.getBoundingClientRect().width));
  document.body.setAttribute('data-images', imgs.length + '/' + ok);
  document.body.setAttribute('data-narrowest', Math.round(narrowest));
});
</script></body>"""


def rendered_images(page: Path, tmp: Path, width: int = 1280) -> tuple[int, int, int]:
    """(images, images decoded, the narrowest image's rendered width in px) of an HTML page
    as headless Chromium renders it in a window ``width`` px wide."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    probe = tmp / "probe.html"
    probe.write_text(page.read_text().replace("</body>", CHECK))
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            f"--window-size={width},2000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r'data-images="(\d+)/(\d+)"', out)
    assert m, out[-2000:]
    w = re.search(r'data-narrowest="(\d+)"', out)
    return int(m.group(1)), int(m.group(2)), int(w.group(1)) if w else 0


def screenshot(page: Path, dest: Path, width: int = 1280) -> Path:
    """A full-width screenshot of ``page`` by headless Chromium (what a reader sees first)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},4000", f"--screenshot={dest}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return dest


def test_chromium_probe_sees_images(tmp_path):
    fig = tmp_path / "a.png"
    fig.write_bytes(PNG)
    page = tmp_path / "p.html"
    page.write_text(markdown_to_html("![x](a.png)\n\n![y](a.png)", {"a": fig}, tmp_path))
    assert rendered_images(page, tmp_path)[:2] == (2, 2)


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    """The README's main job, small: real measurement, predictors, two searches, report."""
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["lam"] for r in summary["rows"]] == [0.0, 0.5]
    assert summary["gain"]["network_ratio"] == pytest.approx(
        summary["rows"][1]["measured_ms"] / summary["rows"][0]["measured_ms"]
    )
    budget = summary["budget"]
    assert budget["budget_ms"] == round(0.7 * summary["rows"][0]["measured_ms"], 3)
    assert "refused" in budget or budget["within_budget"] == (
        budget["measured_ms"] <= budget["budget_ms"]
    )
    assert set(summary["predictors"]) >= {"lut", "elasticnet", "mlp", "gbdt", "lut+mlp"}
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("**Smoke test (`--quick`), not evidence")
    assert "Smoke test" in result.output
    for name in ("convergence", "predicted vs measured", "search curves", "pareto", "budget"):
        assert name in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) >= 6
    for rel in images:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    total, ok, narrowest = rendered_images(out / "report.html", tmp_path)
    assert total == len(images) and ok == total
    assert narrowest >= 480  # in a 1280-px window, no figure shrinks to a thumbnail
    shot = screenshot(out / "report.html", tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_draws_with_sampler_version_3_under_either_runtime():
    """A new ONNX Runtime file defaults to version 4; the demo keeps 3 (its few rows drawn by
    version 4 missed the budget in eager mode, and under ORT it is not yet tried)."""
    from lenna.demo.pipeline import measure_config
    from lenna.demo.plan import FULL, QUICK

    for plan in (FULL, QUICK):
        for backend in ("torch", "onnxruntime"):
            assert measure_config(plan, backend).sampler_version == 3
