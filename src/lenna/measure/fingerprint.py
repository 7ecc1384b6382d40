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


# instruction sets that change which kernels a CPU runs (and so the cost order of ops)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")

# keys added after files were first written: a stored fingerprint without one of them is
# compared without it (its machine was not asked), so upgrading LENNA does not turn a file
# into another machine's
LATER_KEYS = ("cpu_id",)


def cpu_id(cpuinfo: str | None = None) -> str:
    """The CPU's generation where its name hides it: virtual machines often report a bare
    "AMD EPYC", while family/model/stepping, cache and instruction sets still tell a Rome
    from a Genoa (found when a resumed file's host changed under the same name)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    if "CPU implementer" in fields:  # an Arm core names itself by implementer and part
        features = set(fields.get("Features", "").split())
        return (
            f"implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')} "
            f"variant {fields.get('CPU variant', '?')} revision {fields.get('CPU revision', '?')}"
            f", {' '.join(f for f in ARM_FLAGS if f in features) or 'no asimd'}"
        )
    flags = set(fields.get("flags", "").split())
    parts = [
        f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')} "
        f"stepping {fields.get('stepping', '?')}",
        fields.get("cache size", "? cache"),
        " ".join(f for f in ISA_FLAGS if f in flags) or "no avx2",
    ]
    return ", ".join(parts)


def _hash(info: dict) -> str:
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]


def same_machine(stored: dict, here: dict) -> bool:
    """Whether a stored fingerprint is this one (``here``, as this LENNA makes it): the same
    hash, or, for one written before :data:`LATER_KEYS` existed, the same hash once ours
    leaves out the keys it lacks. One-way: ``stored`` is the older record."""
    if stored.get("hash") is None:
        return False  # no record of a machine is no machine
    if stored.get("hash") == here.get("hash"):
        return True
    missing = [k for k in LATER_KEYS if k not in stored and k in here]
    if not missing:
        return False
    old = {k: v for k, v in here.items() if k != "hash" and k not in missing}
    return _hash(old) == stored.get("hash")


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
        "cpu_id": cpu_id(),
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
    return {**info, "hash": _hash(info)}


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
    model is refused or warned about as another machine's. A :data:`LATER_KEYS` field one of
    them lacks is unknown, not different."""
    keys = {**theirs, **ours}
    return [
        k
        for k in keys
        if k != "hash"
        and not (k in LATER_KEYS and (k not in theirs or k not in ours))
        and theirs.get(k) != ours.get(k)
    ]
