"""Opening a dataset for a run: created race-free, or resumed only under the same space, config
and machine (a file of one setting refuses rows of another), with one writer at a time."""

from __future__ import annotations

import time
from pathlib import Path

from lenna._version import __version__
from lenna.errors import InputError
from lenna.measure.backend import METHOD_KEYS
from lenna.measure.fingerprint import differences, same_machine
from lenna.measure.run_config import RunConfig, check_label_version, check_sizes, upgrade_config
from lenna.measure.store import Dataset, DatasetExists
from lenna.space import get_space


def open_dataset(path: str | Path, cfg: RunConfig, fp: dict, allow_mixed: bool) -> Dataset:
    """Create the file, or open it for resuming after checking space, config and machine."""
    space = get_space(cfg.space)
    path = Path(path)
    check_label_version(cfg, path)
    check_sizes(cfg)  # before a file exists that would refuse the corrected command
    if not path.exists():
        cfg.sampler()  # refuses ranges with nothing to draw, before a file stores them
        meta = {
            "space": space.name,
            "space_hash": space.definition_hash(),
            "config": cfg.to_dict(),
            "rule_settings": cfg.measure.rule_settings(),
            "fingerprint": fp,
            "lenna_version": __version__,
        }
        try:
            ds = Dataset.create(path, meta, fp)
        except DatasetExists:
            pass  # another process made it a moment ago: open it as any existing file
        else:
            return _locked(ds)
    ds = Dataset.open(path)
    meta = ds.meta
    if meta.get("space") != space.name or meta.get("space_hash") != space.definition_hash():
        ds.close()
        raise InputError(f"{path} holds space {meta.get('space')!r}, not {space.name!r}")
    diff, moved = config_differences(meta, cfg)
    if diff or moved:
        ds.close()
        settled = meta.get("rule_settings") or {}
        if diff or set(settled) != set(cfg.measure.rule_settings()):
            named = [_measure_keys(meta, cfg) if k == "measure" else k for k in diff]
            what = ", ".join(named + (["rule settings: " + moved] if moved else []))
            raise InputError(
                f"{path} was measured with other settings ({what}); "
                "resume with the same options or write to a new file"
            )
        raise InputError(
            f"{path} was measured with other rule settings ({moved}); resume with "
            "`lenna measure` (it takes the file's own) or the same rule_params"
        )
    stored = ds.fingerprints()
    if run_fingerprint(ds, fp) is fp and fp["hash"] not in stored:
        known = list(stored.values()) or [meta["fingerprint"]]
        theirs = min(known, key=lambda f: len(differences(f, fp)))  # the nearest one
        keys = differences(theirs, fp)
        if not keys and (meta.get(CPU_IDS) or {}).get(theirs.get("hash")) != fp.get("cpu_id"):
            keys = ["cpu_id"]  # its first-seen CPU was another generation
        method = [k for k in keys if k in METHOD_KEYS]
        if method or not allow_mixed:
            ds.close()
            what = f"differs in: {', '.join(keys)}" if keys else "recorded as another"
            raise InputError(
                f"{path} was measured on another machine/config (fingerprint "
                f"{theirs.get('hash')}, this one {fp['hash']}; {what}); "
                + (
                    "its labels were timed another way, so they cannot be mixed: measure a new file"
                    if method
                    else "pass --allow-mixed to add to it"
                )
            )
    ds = _locked(ds)
    try:
        _note_max_load(ds, meta, cfg.measure.max_load)
        adopted = run_fingerprint(ds, fp)
        ds.add_fingerprint(adopted)
        seen = dict(ds.meta.get(CPU_IDS) or {})
        if adopted is not fp and "cpu_id" in fp and adopted["hash"] not in seen:
            ds.set_meta(CPU_IDS, {**seen, adopted["hash"]: fp["cpu_id"]})  # later hosts match it
    except BaseException:
        ds.close()  # releases the writer's lock too
        raise
    return ds


UNCOMPARED = ("max_load",)  # measure settings a resumed file may differ in
MAX_LOAD_KEY = "max_load_changes"  # meta: each resume under another load guard, from which row


def max_load_now(meta: dict) -> float:
    """The load guard a file's latest rows were measured with (its config's, or the last
    resume's that changed it)."""
    changes = meta.get(MAX_LOAD_KEY) or []
    if changes:
        return float(changes[-1]["max_load"])
    return float(upgrade_config(meta.get("config") or {})["measure"]["max_load"])


def _note_max_load(ds: Dataset, meta: dict, max_load: float) -> None:
    """Keep in the file from which row on a resumed run measured with another load guard:
    the guard does not change what a label means, so the file resumes, but which rows were
    guarded stays on record (``lenna dataset info``)."""
    if max_load != max_load_now(meta):
        entry = {"rows": ds.count(), "max_load": max_load, "time": time.strftime("%FT%TZ")}
        ds.set_meta(MAX_LOAD_KEY, [*(meta.get(MAX_LOAD_KEY) or []), entry])


# meta: the cpu_id first seen for each machine record made before fingerprints had one
CPU_IDS = "cpu_ids"


def recorded_machine(records: list[dict], cpu_ids: dict, fp: dict) -> dict | None:
    """The record among ``records`` that is this machine (``fp``): the same hash, or one
    made before newer fingerprint keys existed (:func:`same_machine`) whose first-seen
    ``cpu_id`` (``cpu_ids``, if recorded) is ours; ``None`` if none is."""
    for f in records:
        if f.get("hash") == fp["hash"]:
            return f
    for f in records:
        seen = cpu_ids.get(f.get("hash"), fp.get("cpu_id"))
        if same_machine(f, fp) and seen == fp.get("cpu_id"):
            return f
    return None


def run_fingerprint(ds: Dataset, fp: dict) -> dict:
    """The fingerprint rows of this machine carry in ``ds``: ``fp``, or the file's own
    record of this machine made before newer fingerprint keys existed (so an upgrade of
    LENNA keeps one machine under one hash in its files)."""
    stored = list(ds.fingerprints().values()) or [ds.meta.get("fingerprint") or {}]
    found = recorded_machine(stored, ds.meta.get(CPU_IDS) or {}, fp)
    return fp if found is None or found.get("hash") == fp["hash"] else found


def _locked(ds: Dataset) -> Dataset:
    """``ds`` with its writer's lock, or closed and refused in one line."""
    try:
        ds.lock_for_writing()
    except InputError:
        ds.close()
        raise
    return ds


def config_differences(meta: dict, cfg: RunConfig) -> tuple[list[str], str]:
    """How ``cfg`` differs from the file's config (``meta``): the differing config keys, and
    the rule's settings that differ (``""`` if none) where the file stores them. With stored
    settings the rule is compared by what it does, not by how it was asked for."""
    stored, now = upgrade_config(meta.get("config", {})), cfg.to_dict()
    # the load guard is how a label is taken, not what it means: a file may resume with it
    for d in (stored, now):
        d["measure"] = {k: v for k, v in d.get("measure", {}).items() if k not in UNCOMPARED}
    settled = meta.get("rule_settings")  # None in a file from before they were stored
    moved = ""
    if settled is not None:
        stored["measure"] = {**stored.get("measure", {}), "rule_params": None}
        now["measure"] = {**now["measure"], "rule_params": None}
        if stored["measure"].get("rule") == now["measure"]["rule"]:
            moved = _moved(settled, cfg.measure.rule_settings())
    diff = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    return diff, moved


def _measure_keys(meta: dict, cfg: RunConfig) -> str:
    """The measuring settings that differ, by name and value ("backend torch in the file,
    onnxruntime now"): "measure" alone names no option a user could fix."""
    stored = upgrade_config(meta.get("config", {})).get("measure", {})
    now = cfg.to_dict()["measure"]
    skip = set(UNCOMPARED) | ({"rule_params"} if meta.get("rule_settings") is not None else set())
    keys = sorted(
        k for k in set(stored) | set(now) if k not in skip and stored.get(k) != now.get(k)
    )
    return _moved({k: stored.get(k) for k in keys}, {k: now.get(k) for k in keys}) or "measure"


def _moved(before: dict, after: dict) -> str:
    """``passes 3 in the file, 2 now, ...`` for the settings that differ."""
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return ", ".join(f"{k} {before.get(k)} in the file, {after.get(k)} now" for k in keys)
