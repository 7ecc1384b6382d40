"""A dataset's run config: what defines its rows, how older files' configs read today, and
the checks made before a file is opened (sizes that fit, label versions that mix)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lenna.errors import InputError
from lenna.measure.config import MeasureConfig
from lenna.measure.sampler import SAMPLER_VERSION, SAMPLER_VERSION_ORT, Sampler
from lenna.memory import block_bytes, check_fits
from lenna.space import get_space
from lenna.space.mixed import NONE_OP

# 2: a sampled `none` edge is absent from the timed path (docs/measurement.md); 1 ran it
LABEL_VERSION = 2


@dataclass
class RunConfig:
    """Everything that defines a dataset's rows; stored in the file and checked on resume."""

    space: str
    channels: tuple[int, int] = (8, 128)
    resolutions: tuple[int, ...] = (32, 16, 8)
    block_types: tuple[str, ...] = ("normal", "reduction")
    seed: int = 0
    drift_every: int = 50
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    sampler_version: int | None = None  # None: the backend's default (see __post_init__)
    label_version: int = LABEL_VERSION

    def __post_init__(self) -> None:
        # Why per backend: under ONNX Runtime version 4 won on the cells a latency term steers
        # to and lost nothing beyond a split's noise elsewhere; in eager mode it cost the
        # uniformly drawn derived cells (benchmarks/HISTORY.md, "Sampler version 4").
        if self.sampler_version is None:
            ort = self.measure.backend == "onnxruntime"
            self.sampler_version = SAMPLER_VERSION_ORT if ort else SAMPLER_VERSION

    def sampler(self) -> Sampler:
        return Sampler(
            get_space(self.space),
            self.channels,
            self.resolutions,
            self.block_types,
            self.seed,
            self.sampler_version,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["resolutions"] = list(self.channels), list(self.resolutions)
        d["block_types"] = list(self.block_types)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = upgrade_config(d)
        d["measure"] = MeasureConfig(**d["measure"])
        for k in ("channels", "resolutions", "block_types"):
            d[k] = tuple(d[k])
        return cls(**d)


def upgrade_config(d: dict) -> dict:
    """A stored config as this version writes it: files from before reference normalisation
        were measured without it, files from before anchors with the single reference, files from
        before versioned samplers and labels with version 1 of each, files from before backends in
    PyTorch eager mode, files from before the load guard without it (``max_load`` 0)."""
    d = {"sampler_version": 1, "label_version": 1, **d}
    d["measure"] = {
        "normalise": False,
        "reference": "single",
        "backend": "torch",
        "max_load": 0.0,
        **d.get("measure", {}),
    }
    return d


def check_sizes(
    cfg: RunConfig, channels: int | None = None, resolutions: tuple[int, ...] | None = None
) -> None:
    """Refuse, before any file is made, blocks too large for this machine's memory: the
    largest block of each type at the config's (or ``channels``, ``resolutions``) largest
    size."""
    space = get_space(cfg.space)
    hi = channels or cfg.channels[1]
    for bt in cfg.block_types:
        res = [r for r in resolutions or cfg.resolutions if not (bt == "reduction" and r % 2)]
        if res:
            need = block_bytes(space, bt, hi, max(res), cfg.measure.batch)
            check_fits(
                f"a {bt} block of {hi} channels at {max(res)}×{max(res)}", need, cfg.measure.device
            )


def check_label_version(cfg: RunConfig, path: Path) -> None:
    """Refuse to add rows of today's labels to a file whose labels meant something else.

    Label version 1 timed a sampled ``none`` edge (a zero tensor, added into its node);
    version 2 times the path as the derived cell runs it. Only spaces with a ``none`` op
    differ, so a ``lenna`` file of version 1 resumes unchanged."""
    if cfg.label_version == LABEL_VERSION:
        return
    if cfg.label_version > LABEL_VERSION or NONE_OP in get_space(cfg.space).ops:
        raise InputError(
            f"{path} holds labels of version {cfg.label_version} (this LENNA measures version "
            f"{LABEL_VERSION}: a `none` edge is absent, as in the derived cell); "
            "measure into a new file"
        )


def stored_config(meta: dict) -> dict | None:
    """A file's config with its rule's settings as the file stored them (all of them,
    defaults included), so work on an existing file (a resume, a recheck) measures as the
    file began even where this LENNA's defaults differ."""
    config, settled = meta.get("config"), meta.get("rule_settings")
    if config is None or settled is None:
        return config
    own = {**config, "measure": {**config["measure"], "rule_params": settled}}
    try:  # settings this LENNA's rule no longer has: the caller's check says so in one line
        RunConfig.from_dict(own)
    except InputError:
        return config
    return own
