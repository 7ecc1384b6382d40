"""The predictor interface: scikit-learn-like ``fit``/``predict_features``/``save``/``load``,
plus, for differentiable models, ``predict(alphas, ...)`` in torch with gradients to α.

Every model works on the same encoded features (``lenna.space.encode``) and the same splits.
A model also remembers what it was trained on (block types, channel and resolution ranges)
so the search can be told when it asks about blocks the model never saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from lenna.errors import InputError
from lenna.predict.data import LatencyData
from lenna.predict.splits import Split
from lenna.space import SearchSpace, encode

_REGISTRY: dict[str, type[Predictor]] = {}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    _REGISTRY[cls.kind] = cls
    return cls


def predictor_class(kind: str) -> type[Predictor]:
    if kind not in _REGISTRY:
        raise InputError(f"unknown model kind {kind!r}; expected one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[kind]


def list_kinds() -> list[str]:
    return list(_REGISTRY)


class OutOfRange(UserWarning):
    """A prediction was asked for a block outside the model's training ranges."""


class Predictor:
    """Base class; subclasses implement ``_fit``, ``_predict_np`` and the state hooks."""

    kind: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}  # the hyper-parameters a kind takes, and their values

    def __init__(self, space: SearchSpace, seed: int = 0, **hparams: Any) -> None:
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:  # a misspelt key must not be silently ignored
            takes = ", ".join(self.defaults) or "none"
            raise InputError(
                f"{self.kind} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"it takes: {takes}"
            )
        self.space, self.seed, self.hparams = space, seed, hparams
        self.info: dict[str, Any] = {}
        # (shapes, device, dtype) -> shape columns of predict_shapes; shapes do not change
        self._shape_columns: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _hp(self) -> dict[str, Any]:
        """The declared defaults, overridden by what was given."""
        return {**self.defaults, **self.hparams}

    # ---- estimator API -----------------------------------------------------------------
    def fit(self, data: LatencyData, split: Split) -> Predictor:
        """Fit on ``split.train`` (``split.val`` for early stopping); remember ranges and ids."""
        if data.space.name != self.space.name:
            raise InputError(f"data of space {data.space.name!r} for a {self.space.name!r} model")
        tr = data.subset(np.isin(data.ids, split.train))
        va = data.subset(np.isin(data.ids, split.val))
        if len(tr) < 2:
            raise InputError(f"need at least 2 training samples, got {len(tr)}")
        torch.manual_seed(self.seed)
        self._fit(tr, va)
        self.info.update(
            {
                "ranges": {
                    "block_types": sorted(set(tr.block_types.tolist())),
                    "channels": [int(tr.channels.min()), int(tr.channels.max())],
                    "resolutions": sorted({int(r) for r in tr.resolution}),
                },
                "fingerprint": data.fingerprint,
                "reference_ms": data.reference_ms,
                "reference": data.reference,
                "reference_ratios": data.reference_ratios,
                "dataset_identity": data.identity,
                "split": {
                    "train": split.train.tolist(),
                    "val": split.val.tolist(),
                    "test": split.test.tolist(),
                },
            }
        )
        return self

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Milliseconds for encoded feature rows ``(n, F)``."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.space.num_features)
        return np.asarray(self._predict_np(X), dtype=np.float64)

    def _predict_np(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.forward_features(torch.as_tensor(X)).numpy()

    def to(self, device: torch.device | str) -> Predictor:
        """The model's tensors on ``device`` (a search's), so a step computes E[latency] where
        α lives, with no copy to the CPU and back. Weights stay float64. Returns ``self``."""
        for name, v in list(vars(self).items()):
            if isinstance(v, torch.nn.Module | Predictor):
                v.to(device)
            elif isinstance(v, torch.Tensor):
                setattr(self, name, v.to(device))
            elif hasattr(v, "to_device"):
                v.to_device(device)
        return self

    # ---- differentiable path -----------------------------------------------------------
    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        raise InputError(
            f"the {self.kind} model is not differentiable; use lut, elasticnet, mlp, lut+mlp or "
            "additive in a search"
        )

    def predict(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: int,
        resolution: int,
        strict: bool = False,
    ) -> torch.Tensor:
        """Expected latency (ms) of blocks with logits ``alphas`` ``(..., E, K)``; softmax inside,
        gradients flow to ``alphas``. Outside the training ranges: a warning, or an
        :class:`InputError` with ``strict``."""
        self.check_range(block_type, channels, resolution, strict)
        if not isinstance(alphas, torch.Tensor):
            alphas = torch.as_tensor(np.asarray(alphas, dtype=np.float64))
        elif not alphas.is_floating_point():  # integer logits are logits too
            alphas = alphas.double()
        X = encode(self.space, block_type, channels, resolution, alphas)
        # one value per block, whatever the model kind's own output shape
        return self.forward_features(X).reshape(alphas.shape[:-2])

    def predict_shapes(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: Sequence[int],
        resolutions: Sequence[int],
    ) -> torch.Tensor:
        """Expected latency (ms) of blocks of one type at several shapes in one pass: row ``i``
        of ``alphas`` ``(n, E, K)`` at ``channels[i]``, ``resolutions[i]``. A search's cells
        share their type's α but not their shape; one pass per type, not per cell, and
        feature columns made once on α's device, are what keep the latency term cheap on a
        GPU. The caller checks the ranges (:meth:`check_range`) and that α are finite (here
        that would make the CPU wait for the GPU at every step)."""
        X = self.shape_features(alphas, block_type, channels, resolutions)
        return self.forward_features(X).reshape(X.shape[:-1])

    def shape_features(
        self,
        alphas: torch.Tensor,
        block_type: str,
        channels: Sequence[int],
        resolutions: Sequence[int],
    ) -> torch.Tensor:
        """The features of :meth:`predict_shapes`, ``(n, F)``, with the shape columns made once
        per (shapes, device, dtype)."""
        if not alphas.is_floating_point():  # integer logits are logits too
            alphas = alphas.double()
        key = (tuple(channels), tuple(resolutions), alphas.device, alphas.dtype)
        cache = self._shape_columns
        if key not in cache:
            kw = {"dtype": alphas.dtype, "device": alphas.device}
            with torch.inference_mode(False):  # usable with autograd, whoever asks first
                cache[key] = (torch.tensor(key[0], **kw), torch.tensor(key[1], **kw))
        c, r = cache[key]
        return encode(self.space, block_type, c, r, alphas, check_values=False)

    def check_range(
        self, block_type: str, channels: int, resolution: int, strict: bool = False
    ) -> str | None:
        """A message if (block type, channels, resolution) lies outside the training ranges."""
        r = self.info.get("ranges")
        if not r:
            return None
        problems = []
        if block_type not in r["block_types"]:
            problems.append(f"block type {block_type!r} (trained: {r['block_types']})")
        lo, hi = r["channels"]
        if not lo <= channels <= hi:
            problems.append(f"channels {channels} (trained: {lo}..{hi})")
        if int(resolution) not in r["resolutions"]:
            problems.append(f"resolution {resolution} (trained: {r['resolutions']})")
        if not problems:
            return None
        msg = f"{self.kind} model asked outside its training ranges: " + "; ".join(problems)
        if strict:
            raise InputError(msg)
        warnings.warn(msg, OutOfRange, stacklevel=3)
        return msg

    # ---- persistence hooks (see lenna.predict.io) --------------------------------------
    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors for safetensors and JSON-able parameters."""
        raise NotImplementedError

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        raise NotImplementedError
