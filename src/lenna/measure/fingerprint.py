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

import torch


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
) -> dict:
    """Facts that decide a latency, plus ``hash`` (12 hex digits of the rest)."""
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
    }
    blob = json.dumps(info, sort_keys=True).encode()
    return {**info, "hash": hashlib.sha256(blob).hexdigest()[:12]}


def describe(fp: dict) -> str:
    """One line for reports: device, threads, torch, hash."""
    return (
        f"{fp['device_name']} ({fp['device']}, {fp['threads']} "
        f"thread{'' if fp['threads'] == 1 else 's'}, batch {fp['batch']}, "
        f"{fp['dtype']}), torch {fp['torch']}, {fp['os']} [{fp['hash']}]"
    )
