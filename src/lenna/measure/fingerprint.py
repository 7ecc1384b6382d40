"""The hardware/software fingerprint a label belongs to.

A latency is a fact about one machine in one configuration; every dataset and model carries
the fingerprint it was measured under, with a short hash for quick comparison. Only stable
facts go into the hash (no load, no clock speed of the moment).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import TYPE_CHECKING

import torch

from lenna.measure.backend import backend_info

if TYPE_CHECKING:
    from lenna.measure.config import MeasureConfig


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(
    device: str = "cpu",
    threads: int | None = None,
    dtype: str = "float32",
    batch: int = 1,
    simulated: bool = False,
    backend: str = "torch",
) -> dict:
    """Facts that decide a latency, plus ``hash`` (12 hex digits of the rest). The backend's
    facts are added only for a backend other than ``torch``, so older files keep their hash."""
    dev = torch.device(device)
    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "dtype": dtype,
        "batch": batch,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "simulated": simulated,
        **backend_info(backend),
    }
    blob = json.dumps(info, sort_keys=True).encode()
    return {**info, "hash": hashlib.sha256(blob).hexdigest()[:12]}


def config_fingerprint(config: MeasureConfig, simulated: bool = False) -> dict:
    """:func:`fingerprint` of labels measured under ``config``."""
    return fingerprint(
        config.device, config.threads, config.dtype, config.batch, simulated, config.backend
    )


def describe(fp: dict) -> str:
    """One line for reports: device, threads, torch, hash."""
    return (
        f"{fp['device_name']} ({fp['device']}, {fp['threads']} "
        f"thread{'' if fp['threads'] == 1 else 's'}, batch {fp['batch']}, "
        f"{fp['dtype']}), torch {fp['torch']}{_runtime(fp)}, {fp['os']} [{fp['hash']}]"
    )


def _runtime(fp: dict) -> str:
    if fp.get("backend", "torch") == "torch":
        return ""
    return f", {fp['backend']} {fp.get(fp['backend'], '')}".rstrip()


def differences(theirs: dict, ours: dict) -> list[str]:
    """The fields two fingerprints disagree on (the hash aside): what to name when a file or a
    model is refused or warned about as another machine's."""
    return [k for k in {**theirs, **ours} if k != "hash" and theirs.get(k) != ours.get(k)]
