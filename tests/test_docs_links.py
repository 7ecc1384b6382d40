"""Every relative link in the Markdown a user reads resolves: README.md, docs/ and benchmarks/.

A link ``[text](target)`` must name an existing file (relative to the page that holds it), and
a ``#anchor`` (alone, or after a ``.md`` target) must be the slug of a heading of that page, as
GitHub makes it: the heading's text, lowercased, punctuation other than hyphens and underscores
dropped, spaces turned into hyphens, and ``-1``, ``-2``, … added to repeated slugs. Links to
``http(s)://`` and other schemes are not followed. Code blocks and code spans are not links.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("**/*.md"), *(ROOT / "benchmarks").glob("**/*.md")],
    key=str,
)

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            if fenced is None:
                fenced = fence.group(1)
            elif fence.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = LINK.sub(lambda m: m.group(1), heading)  # a link in a heading reads as its text
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link on the page, code spans left out."""
    out = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        # a code span is not a link, but a link's text may be one: keep its place
        line = CODE_SPAN.sub(lambda m: "code" if "](" in m.group(2) else m.group(0), line)
        out += [(number, m.group(2)) for m in LINK.finditer(line)]
    return out


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """One line per broken link on the page."""
    problems = []
    for number, target in links(page):
        where = f"{page.relative_to(root).as_posix()}:{number}: ({target})"
        if not target:
            problems.append(f"{where} empty target")
            continue
        if SCHEME.match(target):  # http(s), mailto, …: not checked
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.is_file():
            problems.append(f"{where} no such file")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where} an anchor into a file that is not Markdown")
            elif unquote(anchor) not in anchors(dest):
                problems.append(f"{where} no heading with anchor #{unquote(anchor)}")
    return problems


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    expected = {
        "README.md",
        "docs/measurement.md",
        "docs/predictors.md",
        "docs/search.md",
        "docs/fleet.md",
        "docs/gpu.md",
        "docs/benchmarks.md",
        "docs/limitations.md",
        "docs/terms.md",
        "benchmarks/RESULTS.md",
        "benchmarks/HISTORY.md",
        "benchmarks/diagnostics/README.md",
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    problems = broken(page)
    assert not problems, "\n".join(problems)


def test_slugs_follow_github():
    assert slug("Measurement repeatability") == "measurement-repeatability"
    assert slug("The datasets in benchmarks/data") == "the-datasets-in-benchmarksdata"
    assert (
        slug("Inside one measurement (`reset_noise.py`)") == "inside-one-measurement-reset_noisepy"
    )
    assert slug("Sweeping λ") == "sweeping-λ"
    assert slug("A fleet of target devices (Ray)") == "a-fleet-of-target-devices-ray"
    assert slug("Drift guard, per device") == "drift-guard-per-device"


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Some part\n")
    page = tmp_path / "b.md"
    page.write_text(
        "# B\n\n"
        "[ok](a.md) [ok](a.md#some-part) [ok](#b) [web](https://example.org/x#y)\n"
        "`[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[missing](nowhere.md)\n"
        "[bad anchor](a.md#title-2)\n"
        "[bad local anchor](#nope)\n"
    )
    problems = broken(page, tmp_path)
    assert len(problems) == 3, problems
    assert "b.md:8: (nowhere.md) no such file" in problems[0]
    assert "#title-2" in problems[1]
    assert "#nope" in problems[2]
