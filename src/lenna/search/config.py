"""Everything that decides a search's result; stored as the run folder's ``config.json``.

Defaults: DARTS's optimisers (SGD + cosine for weights, Adam for α) and a network sized for
2 CPU cores whose cells fall inside the default measurement ranges (8–128 channels,
resolutions 32/16/8).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch

from lenna.errors import InputError
from lenna.limits import MAX_SEED, MAX_THREADS
from lenna.search.device import check_spelling
from lenna.search.latency import FORMS
from lenna.search.network import NetConfig
from lenna.search.presets import preset_values
from lenna.space import get_space

SEARCH_MODES = ("weighted", "gated")

AMP_CHOICES = ("auto", "off", "bf16")
# settings that decide a run's speed, not its result: a run may continue with others
SPEED_ONLY = ("device", "channels_last", "cuda_graph")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device``: ``auto`` is bf16 on a CUDA device that
    supports it (where mixed precision pays) and off elsewhere (a CPU without bf16 units runs
    it slower)."""
    if amp == "bf16":
        return torch.bfloat16
    if (
        amp == "auto"
        and device.type == "cuda"
        and torch.cuda.get_device_capability(device) >= (8, 0)
    ):
        return torch.bfloat16  # native bf16 (Ampere and later); emulated bf16 only costs
    return None


@dataclass
class SearchConfig:
    space: str = "lenna"
    data: str = "mnist5k"
    limit: int | None = 2000  # training images used by the search (half for w, half for α)
    predictor: str | None = None
    lam: float = 0.0
    form: str = "linear"
    ref_ms: float | None = None
    target_ms: float | None = None
    budget_ms: float | None = None  # whole network; replaces λ by a multiplier (search.budget)
    budget_lr: float = 0.2  # dual-ascent step of μ per α step, per unit of relative excess
    fixed_ms: float | None = None  # the network outside its cells; None: measured
    allow_extrapolation: bool = False
    epochs: int = 8
    warmup: int = 0  # epochs that train only the weights before α moves (FBNet/ProxylessNAS)
    batch: int = 64
    mode: str = "weighted"
    unrolled: bool = False
    seed: int = 0
    threads: int | None = None
    device: str = "auto"  # where the supernet, α, latency term and data live (search.device)
    preset: str | None = None  # the preset the other values started from (search.presets)
    augment: bool = False  # random crop (padding 4) and flip of every batch, on the device
    amp: str = "auto"  # "off", "bf16", or "auto": bf16 on a GPU that has it, else off
    channels_last: bool = False  # supernet and batches in torch.channels_last (speed only)
    cuda_graph: bool = True  # on a GPU, each epoch's step replayed as a CUDA graph (search.graphed)
    net: NetConfig = field(default_factory=NetConfig)
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_wd: float = 3e-4
    grad_clip: float = 5.0
    a_lr: float = 3e-3  # 10× DARTS's 3e-4: a search here is ~100× fewer steps
    a_wd: float = 1e-3

    def __post_init__(self) -> None:
        get_space(self.space)
        if self.mode == "fixed":  # a block's mode, not a search's
            raise InputError(f"a search needs mode {' or '.join(SEARCH_MODES)}")
        if self.mode not in SEARCH_MODES:
            raise InputError(
                f"unknown mode {self.mode!r}; expected one of: {', '.join(SEARCH_MODES)}"
            )
        if self.form not in FORMS:
            raise InputError(
                f"unknown latency form {self.form!r}; expected one of: {', '.join(FORMS)}"
            )
        if not (isinstance(self.lam, int | float) and math.isfinite(self.lam) and self.lam >= 0):
            raise InputError(f"λ must be a finite number >= 0, got {self.lam}")
        if self.lam > 0 and not self.predictor:
            raise InputError("λ > 0 needs a latency predictor (--predictor MODEL)")
        self._check_budget()
        for name in ("epochs", "batch"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup < self.epochs:
            raise InputError(f"--warmup must be in [0, --epochs), got {self.warmup}")
        if self.limit is not None and self.limit < 2:
            raise InputError(f"--limit must be >= 2 images, got {self.limit}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise InputError(f"--threads must be from 1 to {MAX_THREADS}, got {self.threads}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"--seed must be an integer from 0 to {MAX_SEED}, got {self.seed}")
        check_spelling(self.device)  # availability: when the search starts
        if self.preset is not None:
            preset_values(self.preset)  # an unknown name: one line
        if self.amp not in AMP_CHOICES:
            raise InputError(f"unknown amp {self.amp!r}; expected one of: {', '.join(AMP_CHOICES)}")
        for name, flag in (("w_lr", "w_lr"), ("a_lr", "--arch-lr (a_lr)")):
            if not getattr(self, name) > 0:
                raise InputError(f"{flag} must be > 0, got {getattr(self, name)}")

    def _check_budget(self) -> None:
        v = self.fixed_ms
        if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise InputError(f"--fixed-ms (fixed_ms) must be a number of ms >= 0, got {v}")
        v = self.budget_ms
        if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise InputError(f"--budget-ms (budget_ms) must be a number of ms > 0, got {v}")
        if not (math.isfinite(self.budget_lr) and self.budget_lr > 0):
            raise InputError(f"--budget-lr (budget_lr) must be > 0, got {self.budget_lr}")
        if self.budget_ms is None:
            return
        if not self.predictor:
            raise InputError("a latency budget needs a latency predictor (--predictor MODEL)")
        if self.lam > 0 or self.target_ms is not None:
            raise InputError(
                "a latency budget replaces --lam and --target-ms: give one or the other"
            )
        if self.form != "linear":
            raise InputError("a latency budget has its own loss; leave --form at linear")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["net"] = self.net.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown search config keys: {sorted(unknown)}")
        d = dict(d)
        if "net" in d:
            d["net"] = NetConfig.from_dict(d["net"])
        return cls(**d)
