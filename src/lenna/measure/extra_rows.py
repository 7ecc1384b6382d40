"""Rows the sampler did not draw: given blocks (e.g. the cells of a finished search) added to
a dataset, measured exactly as its sampled rows are.

Each such row's ``sample_index`` is negative and a hash of its block (type, channels,
resolution, α), so adding the same block twice adds nothing, and the sampler's indices (from
0 up) never meet them: ``-n N`` still means N sampled rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenna.errors import InputError
from lenna.measure.block_measure import measure_block
from lenna.measure.dataset_open import run_fingerprint
from lenna.measure.fingerprint import config_fingerprint
from lenna.measure.runner import (
    RunConfig,
    _seed,
    dataset_calibration,
    local_calibrate,
    open_dataset,
    sample_row,
)
from lenna.memory import block_bytes, check_fits
from lenna.signals import stop_if_signalled
from lenna.space import get_space


@dataclass(frozen=True)
class ExtraBlock:
    """A block to add; ``regime`` says where it came from (stored in the row)."""

    block_type: str
    channels: int
    resolution: int
    alphas: np.ndarray
    regime: str


def block_index(block_type: str, channels: int, resolution: int, alphas: np.ndarray) -> int:
    """A negative row index that is a function of the block alone (α to 1e-9)."""
    blob = json.dumps(
        [block_type, int(channels), int(resolution), np.round(alphas, 9).tolist()]
    ).encode()
    return -1 - int(hashlib.sha256(blob).hexdigest()[:15], 16)


def add_blocks(
    path: str | Path,
    cfg: RunConfig,
    blocks: Iterable[ExtraBlock],
    *,
    allow_mixed: bool = False,
    on_sample: Callable[[dict, int], None] | None = None,
    recalibrate: bool = False,
    on_calibrate: Callable[[], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Measure the ``blocks`` not yet in ``path`` into it, at the dataset's calibrated speed
    (a new file takes this machine's calibration, as :func:`run_measurement` says); returns
    (rows added, blocks already there)."""
    space = get_space(cfg.space)
    blocks = list(blocks)
    for b in blocks:
        space.check(b.block_type, b.channels, b.resolution)
        space.check_alphas(b.alphas)
        if b.block_type not in cfg.block_types:
            raise InputError(
                f"{path} holds {', '.join(cfg.block_types)} blocks, not {b.block_type}"
            )
    for b in blocks:  # before the file is opened: nothing is left to refuse a corrected run
        need = block_bytes(space, b.block_type, b.channels, b.resolution, cfg.measure.batch)
        check_fits(f"a {b.block_type} block of {b.channels} channels", need, cfg.measure.device)
    m = cfg.measure
    fp = config_fingerprint(m)
    added = skipped = 0
    with open_dataset(path, cfg, fp, allow_mixed) as ds:
        fp = run_fingerprint(ds, fp)
        have = ds.indices()
        todo = []
        for b in blocks:
            i = block_index(b.block_type, b.channels, b.resolution, b.alphas)
            if i in have or any(i == j for j, _ in todo):
                skipped += 1
            else:
                todo.append((i, b))
        if not todo:
            return 0, skipped
        chans = [b.channels for _, b in todo] + list(cfg.channels)
        res = tuple(sorted({b.resolution for _, b in todo} | set(cfg.resolutions)))
        cal = dataset_calibration(
            ds,
            cfg,
            local_calibrate(space, m, True, recalibrate, on_calibrate, on_warning),
            (min(chans), max(chans)),
            res,
        )
        for i, b in todo:
            stop_if_signalled()  # a handler's raise lost in a callback stops here
            meas = measure_block(
                space,
                b.block_type,
                b.channels,
                b.resolution,
                b.alphas,
                m,
                _seed(cfg.seed, -i),
                calibration=cal,
            )
            row = sample_row(meas, i, b.regime, m.batch, fp["hash"], trace=False)
            ds.add_sample(row)
            added += 1
            if on_sample:
                on_sample(row, added)
    return added, skipped
