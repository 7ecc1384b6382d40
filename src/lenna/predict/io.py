"""Model folders: ``model.json`` (everything but weights) + ``weights.safetensors``.

No pickle anywhere: loading reads JSON and tensors (and LightGBM's text format), so it can
never execute code. It refuses, with one line, a missing or malformed file, an unknown kind,
a newer format, or a model of another space definition; a model measured on another
machine's fingerprint loads with a warning.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lenna._version import __version__
from lenna.atomic import missing_folder, replace_files
from lenna.errors import InputError
from lenna.measure.fingerprint import differences, fingerprint, same_machine
from lenna.predict.base import Predictor, predictor_class
from lenna.space import SearchSpace, get_space
from lenna.space.encode import encode

FORMAT_VERSION = 4  # 2: additive's alignment inputs; 3: its members; 4: divisible (older load)
META_FILE, WEIGHTS_FILE = "model.json", "weights.safetensors"
EXTRA_FILES = ("model.lgb.txt",)  # written by kinds with a format of their own (gbdt)


class ForeignMachine(UserWarning):
    """The model's labels were measured on another machine/config than this one."""


def save_predictor(model: Predictor, folder: str | Path) -> Path:
    """Write the model folder atomically: every file complete on disk before any file of a
    previous model there is replaced, so a failure (a full disk) keeps the previous model."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    if not folder.parent.exists():
        raise InputError(missing_folder(folder.parent))
    tensors, params = model.state()
    meta = {
        "format_version": FORMAT_VERSION,
        "lenna_version": __version__,
        "kind": model.kind,
        "differentiable": model.differentiable,
        "space": model.space.name,
        "space_hash": model.space.definition_hash(),
        "feature_names": model.space.feature_names(),
        "seed": model.seed,
        "hparams": model.hparams,
        "params": params,
        "info": model.info,
    }

    def write(staging: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / WEIGHTS_FILE))
        if hasattr(model, "save_extra"):
            model.save_extra(staging)
        (staging / META_FILE).write_text(json.dumps(meta, indent=1))

    try:
        replace_files(folder, write, (META_FILE, WEIGHTS_FILE, *EXTRA_FILES))
    except (OSError, SafetensorError) as e:
        raise InputError(
            f"cannot save the model to {folder} ({e.__class__.__name__}: {e}); "
            "a previous model there is kept"
        ) from None
    return folder


def load_predictor(folder: str | Path, space: str | None = None) -> Predictor:
    """Load a model folder; ``space`` (optional) must match the model's."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise InputError(f"{folder} is not a LENNA model (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"a JSON object was expected, not {type(meta).__name__}")
        kind, version = meta["kind"], int(meta["format_version"])
        name, space_hash = meta["space"], meta["space_hash"]
    except KeyError as e:
        raise InputError(f"{meta_path} is malformed (no field {e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{meta_path} is malformed (not JSON: {e})") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{meta_path} is malformed ({e})") from None
    if version > FORMAT_VERSION:
        raise InputError(
            f"{folder} has model format {version}, newer than this LENNA's "
            f"{FORMAT_VERSION}; upgrade lenna"
        )
    cls = predictor_class(kind)
    if space is not None and name != space:
        raise InputError(f"{folder} is a model of space {name!r}, not {space!r}")
    sp = get_space(name)
    if sp.definition_hash() != space_hash:
        raise InputError(f"{folder} was trained on another definition of space {name!r}")
    names = meta.get("feature_names")
    if names is not None and names != sp.feature_names():  # written from the space: edited
        raise InputError(f"{meta_path}: feature_names are not space {name!r}'s features")
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise InputError(f"{folder / WEIGHTS_FILE} is missing or malformed ({e})") from None
    hparams, params = meta.get("hparams", {}), meta.get("params", {})
    if not isinstance(hparams, dict) or not isinstance(params, dict):
        raise InputError(f"{meta_path} is malformed (hparams/params must be objects)")
    for key, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise InputError(f"{folder / WEIGHTS_FILE}: tensor {key!r} holds NaN or inf")
    _check_info(meta.get("info", {}), meta_path)
    try:
        model = cls(sp, seed=int(meta.get("seed", 0)), **hparams)
        model.info = dict(meta.get("info", {}))
        model.load_state(tensors, params, folder)
        _smoke(model, sp)
    except (
        KeyError,
        RuntimeError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        OverflowError,
    ) as e:
        detail = " ".join(str(e).split())  # torch's size-mismatch report spans several lines
        raise InputError(
            f"{folder} has malformed weights or parameters ({e.__class__.__name__}: {detail})"
        ) from None
    _warn_if_foreign(model, folder)
    return model


def _smoke(model: Predictor, space: SearchSpace) -> None:
    """One prediction of a real block at load time: weights of the wrong shape (a tampered
    or truncated file) fail here, in one line, not in the middle of a search. A shape the
    model does not cover (an op table measured at other resolutions) is not damage: the
    search checks its own shapes."""
    x = encode(space, "normal", 16, 16, np.zeros(space.alpha_shape))
    try:
        model.predict_features(np.asarray(x)[None, :])
    except InputError:
        return


def _check_info(info: object, meta_path: Path) -> None:
    """The parts of ``info`` that searches read: an object, with ``ranges`` as training wrote
    them (block types, [min, max] channels, resolutions)."""
    if not isinstance(info, dict):
        raise InputError(f"{meta_path}: field info must be an object")
    r = info.get("ranges")
    if r is None:
        return
    ok = (
        isinstance(r, dict)
        and isinstance(r.get("block_types"), list)
        and isinstance(r.get("channels"), list)
        and len(r["channels"]) == 2
        and all(_size(c) for c in r["channels"])
        and r["channels"][0] <= r["channels"][1]
        and isinstance(r.get("resolutions"), list)
        and all(_size(x) for x in r["resolutions"])
    )
    if not ok:
        raise InputError(
            f"{meta_path}: field info.ranges must hold block_types, channels [min, max] and "
            "resolutions as training writes them"
        )


def _size(v: object) -> bool:
    """A channel count or resolution as training writes it: a finite number >= 1 (NaN would
    pass every range check, as it compares false)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 1


def _warn_if_foreign(model: Predictor, folder: Path) -> None:
    fp = model.info.get("fingerprint") or {}
    if not fp or fp.get("device") == "cuda":
        return
    backend = fp.get("backend", "torch")
    try:
        here = fingerprint(
            fp.get("device", "cpu"),
            fp.get("threads"),
            fp.get("dtype", "float32"),
            fp.get("batch", 1),
            backend=backend,
        )
    except InputError:  # its runtime is not installed here: it cannot be this machine's
        here = {"hash": f"no {backend} here"}
    if not same_machine(fp, here):
        keys = differences(fp, here) if len(here) > 1 else ["backend"]
        warnings.warn(
            f"{folder} was trained on latencies of another machine/config "
            f"({fp.get('device_name')}, fingerprint {fp.get('hash')}; here {here['hash']}; "
            f"differs in: {', '.join(keys) or 'nothing recorded'})",
            ForeignMachine,
            stacklevel=2,
        )
