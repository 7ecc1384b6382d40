"""Search checkpoints without pickle: tensors in safetensors, everything else in JSON.

Optimiser and scheduler states are flattened (tensors → safetensors keys, the rest → JSON),
so loading a checkpoint can never execute code. The tensors go to a new file named by a fresh
token; then the JSON, which names that file, atomically replaces the old JSON; only then is the
old tensor file removed. A crash at any point leaves one complete checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lenna.atomic import fsync
from lenna.errors import InputError

META = "checkpoint.json"


def flatten_state(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser ``state_dict`` into tensors and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain = {}
        for key, v in entry.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = v.detach().cpu().contiguous()
            else:
                plain[key] = v
        rest["state"][str(idx)] = plain
    return tensors, rest


def unflatten_state(prefix: str, tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`flatten_state`."""
    state: dict[int, dict] = {int(k): dict(v) for k, v in rest["state"].items()}
    for name, t in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        idx, key = name[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write a new checkpoint; the previous one stays valid until the new one is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    weights = f"checkpoint-{token}.safetensors"
    tmp = folder / (META + ".tmp")
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(folder / weights),
            metadata={"token": token},
        )
        fsync(folder / weights)
        tmp.write_text(json.dumps({**meta, "token": token, "weights": weights}))
        fsync(tmp)
        os.replace(tmp, folder / META)
    except (OSError, SafetensorError) as e:  # a full disk: the previous checkpoint stands
        (folder / weights).unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        why = f"cannot write a checkpoint in {folder} ({e}); the last one is kept"
        errno = e.errno if isinstance(e, OSError) else None
        raise (OSError(errno, why) if errno else OSError(why)) from None
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata, or an :class:`InputError` for a missing or malformed checkpoint."""
    meta_path = folder / META
    if not meta_path.is_file():
        raise InputError(f"{folder} has no checkpoint to resume from")
    try:
        meta = json.loads(meta_path.read_text())
        w_path = folder / Path(str(meta["weights"])).name
        tensors = load_file(str(w_path))
        with safe_open(str(w_path), "pt") as f:
            token = (f.metadata() or {}).get("token")
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        SafetensorError,
        OSError,
    ) as e:
        raise InputError(f"{folder}: malformed checkpoint ({e.__class__.__name__}: {e})") from None
    if token is None or token != meta.get("token"):
        raise InputError(f"{folder}: checkpoint files do not belong together")
    return tensors, meta
