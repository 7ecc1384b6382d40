"""Measure a dataset's op table: every candidate op alone at each grid shape (the additive
baseline's table), resumable shape by shape, at the dataset's calibrated speed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lenna.errors import InputError
from lenna.measure.calibration import dataset_calibration, local_calibrate
from lenna.measure.dataset_open import open_dataset, run_fingerprint
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.reference import Calibration
from lenna.measure.run_config import RunConfig, check_sizes
from lenna.space import get_space


def run_op_table(
    path: str | Path,
    cfg: RunConfig,
    channels: tuple[int, int] | None = None,
    resolutions: tuple[int, ...] | None = None,
    passes: int = 20,
    allow_mixed: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_shape: Callable[[list[dict]], None] | None = None,
) -> int:
    """Measure the op table of ``cfg``'s space into ``path`` (resumes: measured shapes are
    skipped); ``on_start(total, done)`` then ``on_shape(rows)`` per shape. Returns the row
    count."""
    from lenna.measure.optable import channel_grid, measure_op_table, op_grid

    if passes < 1:
        raise InputError(f"passes must be >= 1, got {passes}")
    m = cfg.measure
    fp = config_fingerprint(m)
    check_sizes(cfg, (channels or cfg.channels)[1], resolutions)
    grid = channel_grid(*(channels or cfg.channels))
    grid_shapes = op_grid(grid, list(resolutions or cfg.resolutions), list(cfg.block_types))
    with open_dataset(path, cfg, fp, allow_mixed) as ds:
        fp = run_fingerprint(ds, fp)
        have = ds.op_table()
        have = have[(have["fingerprint"] == fp["hash"]) & (have["batch"] == m.batch)]
        done = set(zip(have["block_type"], have["resolution"], have["channels"], strict=True))
        shapes = [s for s in grid_shapes if s not in done]  # a rerun resumes, not redoes
        if on_start:
            on_start(len(grid_shapes), len(grid_shapes) - len(shapes))

        def store(rows: list[dict]) -> None:
            ds.add_ops(rows)
            if on_shape:
                on_shape(rows)

        space = get_space(cfg.space)
        cal = (
            dataset_calibration(
                ds,
                cfg,
                local_calibrate(space, m),
                (min(grid), max(grid)),
                tuple(resolutions or cfg.resolutions),
            )
            if shapes
            else Calibration()
        )
        measure_op_table(
            space,
            shapes,
            m,
            passes,
            fp["hash"],
            on_shape=store,
            calibration=cal,
        )
        return len(ds.op_table())
