"""A search's run folder on disk: its files, the stored config, the metrics and α logs.

Apart from the trainer (:mod:`lenna.search.run`) so that what a run folder holds, and how a
resumed run reads it back, is in one place.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lenna.atomic import missing_folder, write_text
from lenna.errors import InputError
from lenna.search.config import SPEED_ONLY, SearchConfig

CONFIG, METRICS, ALPHAS, GENOTYPE = "config.json", "metrics.csv", "alphas.jsonl", "genotype.json"
FIELDS = (
    "epoch",
    "lr",
    "w_loss",
    "w_acc",
    "a_loss",
    "a_acc",
    "total_loss",
    "predicted_ms",
    "entropy_normal",
    "entropy_reduction",
    "latency_share",
    "epoch_s",
    "expected_network_ms",
    "derived_ms",
    "multiplier",
)
FIXED_PART = "fixed_part.json"
NETWORK_WEIGHTS = "network.safetensors"  # the derived network trained by evaluate-arch


def stored_config(out: Path) -> SearchConfig:
    """The config a run folder was started with, or one clear :class:`InputError`."""
    cfg_path = out / CONFIG
    if not cfg_path.is_file():
        raise InputError(f"{out} holds no search to resume (no {CONFIG})")
    try:
        return SearchConfig.from_dict(json.loads(cfg_path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as e:
        raise InputError(f"{cfg_path} is malformed ({e.__class__.__name__})") from None


def check_folder(out: Path, cfg: SearchConfig, resume: bool) -> SearchConfig:
    """The config to run: the stored one on resume (it must match), else ``cfg`` for an
    empty or new folder. Nothing is written here, so a refused search leaves no trace."""
    cfg_path = out / CONFIG
    if resume:
        stored = stored_config(out)
        # the compute device and memory layout may change between runs (a search started on
        # a GPU can finish on another): they decide speed, not which search it is
        diff = [
            k
            for k, v in cfg.to_dict().items()
            if stored.to_dict()[k] != v
            and k not in SPEED_ONLY
            and not (k == "amp" and v == "auto")  # the run's resolved precision stands
        ]
        if diff:
            raise InputError(
                f"--resume with settings that differ from {cfg_path}: {', '.join(diff)}"
            )
        return replace(stored, **{k: getattr(cfg, k) for k in SPEED_ONLY})
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder; use --resume or another --out")
    if not out.parent.exists():  # as train and measure: a typo is not a new tree of folders
        raise InputError(f"--out {out}: {missing_folder(out.parent)}")
    return cfg


def check_resumable(out: Path, ours: Callable[[str], bool], what: str) -> None:
    """Refuse an ``--out`` folder that holds files but none whose name ``ours`` knows (what
    ``what`` writes there first): running again resumes into the folder, so a mistyped one
    (a predictor's, a dataset's) would get the run's files among its own."""
    try:  # hidden files (a desktop's, a killed run's temporaries) do not make it foreign
        names = (
            [p.name for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
        )
    except OSError as e:
        raise InputError(f"--out {out} cannot be read ({e.strerror})") from None
    if names and not any(ours(n) for n in names):
        raise InputError(
            f"--out {out} holds other files and is not {what}; give a new or empty folder"
        )


def write_config(out: Path, cfg: SearchConfig) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2))
    except OSError as e:
        raise InputError(f"cannot write the run folder {out}: {e.strerror}") from None


def truncate(folder: Path, epoch: int) -> list[dict]:
    """Keep the metric and α rows of epochs ≤ ``epoch`` (those of a lost epoch are redone)."""
    rows: list[dict] = []
    mpath, apath = folder / METRICS, folder / ALPHAS
    if mpath.is_file():
        with mpath.open() as f:
            rows = [_parse_row(r, mpath) for r in csv.DictReader(f)]
        rows = [r for r in rows if r["epoch"] <= epoch]
        write_metrics(mpath, rows)
    if apath.is_file():
        lines = [ln for ln in apath.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if _alpha_epoch(ln) <= epoch]
        write_text(apath, "".join(ln + "\n" for ln in keep))
    return rows


def _alpha_epoch(line: str) -> float:
    """The epoch of an ``alphas.jsonl`` line; a torn last line counts as not written."""
    try:
        return int(json.loads(line)["epoch"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return math.inf


def _parse_row(r: dict, path: Path) -> dict:
    try:  # a column a run written by an older LENNA lacks reads as NaN
        return {
            k: int(v) if k == "epoch" else float(v) if v not in ("", None) else math.nan
            for k, v in r.items()
        }
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: a malformed row ({e})") from None


def write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
