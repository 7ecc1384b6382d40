"""A fingerprint tells CPU generations apart where the name hides them, and an upgrade that
adds such a key keeps an older file's machine the same machine."""

import pytest
from measure_helpers import fast_measure, tiny_config

from lenna.errors import InputError
from lenna.measure.dataset_open import open_dataset, run_fingerprint
from lenna.measure.fingerprint import (
    LATER_KEYS,
    _hash,
    config_fingerprint,
    cpu_id,
    differences,
    same_machine,
)
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset

MILAN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
cache size\t: 512 KB
flags\t\t: fpu sse4_2 avx avx2 fma

processor\t: 1
cpu family\t: 99
"""
GENOA = MILAN.replace("model\t\t: 1", "model\t\t: 17").replace("fma", "fma avx512f avx512_bf16")


GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes asimddp sve i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""


def test_cpu_id_names_generation_cache_and_instruction_sets():
    assert cpu_id(MILAN) == "family 25 model 1 stepping 1, 512 KB, avx2 fma"
    assert cpu_id(GENOA) == "family 25 model 17 stepping 1, 512 KB, avx2 fma avx512f avx512_bf16"
    assert cpu_id("") == "family ? model ? stepping ?, ? cache, no avx2"
    assert cpu_id(GRAVITON3) == "implementer 0x41 part 0xd40 variant 0x1 revision 1, " + (
        "asimd asimddp i8mm bf16 sve"
    )


def _legacy(fp: dict) -> dict:
    """``fp`` as a LENNA before :data:`LATER_KEYS` wrote it."""
    old = {k: v for k, v in fp.items() if k not in LATER_KEYS and k != "hash"}
    return {**old, "hash": _hash(old)}


def test_a_fingerprint_without_the_later_keys_is_still_this_machine():
    fp = config_fingerprint(fast_measure())
    old = _legacy(fp)
    assert old["hash"] != fp["hash"]
    assert same_machine(old, fp) and same_machine(fp, fp)
    assert differences(old, fp) == []  # unknown, not different
    other = {**fp, "cpu_id": "family 25 model 17 stepping 1, 1024 KB, avx2 fma avx512f"}
    other["hash"] = _hash({k: v for k, v in other.items() if k != "hash"})
    assert not same_machine(other, fp)
    assert differences(other, fp) == ["cpu_id"]
    assert not same_machine(_legacy({**fp, "threads": 2}), fp)  # an older file, other threads
    assert not same_machine({}, {}) and not same_machine({"cpu_model": "x"}, fp)  # no record


def test_another_cpu_generation_under_the_same_name_is_refused(tmp_path):
    cfg = tiny_config()
    fp = config_fingerprint(cfg.measure)
    with open_dataset(tmp_path / "d.db", cfg, fp, False):
        pass
    other = {**fp, "cpu_id": cpu_id(GENOA)}
    other["hash"] = _hash({k: v for k, v in other.items() if k != "hash"})
    assert other["cpu_model"] == fp["cpu_model"]
    with pytest.raises(InputError, match=r"differs in: cpu_id\); pass --allow-mixed"):
        open_dataset(tmp_path / "d.db", cfg, other, False)


def test_a_file_from_before_cpu_ids_resumes_under_its_own_hash(tmp_path):
    """Resuming after the upgrade: no refusal, no second fingerprint, rows keep the file's
    hash (so its op table, anchor checks and rechecks still know them as this machine's)."""
    path = tmp_path / "old.db"
    cfg = tiny_config()
    old = _legacy(config_fingerprint(cfg.measure))
    run_measurement(path, cfg, 2, fp=old)
    run_measurement(path, cfg, 4)  # this LENNA: its fingerprint has a cpu_id
    with Dataset.open(path) as ds:
        assert list(ds.fingerprints()) == [old["hash"]]
        assert set(ds.samples()["fingerprint"]) == {old["hash"]}
        assert run_fingerprint(ds, config_fingerprint(cfg.measure)) == old


def test_the_first_host_to_take_over_an_older_file_fixes_its_cpu(tmp_path):
    """A file from before cpu_ids records the cpu_id of the first host that resumes it; a
    host of the same name but another generation is then refused (``--allow-mixed`` adds
    it under its own hash)."""
    path = tmp_path / "old.db"
    cfg = tiny_config()
    fp = config_fingerprint(cfg.measure)
    old = _legacy(fp)
    run_measurement(path, cfg, 1, fp=old)
    run_measurement(path, cfg, 2)  # this host takes it over
    with Dataset.open(path) as ds:
        assert ds.meta["cpu_ids"] == {old["hash"]: fp["cpu_id"]}
    other = {**fp, "cpu_id": cpu_id(GENOA)}
    other["hash"] = _hash({k: v for k, v in other.items() if k != "hash"})
    with pytest.raises(InputError, match=r"differs in: cpu_id\); pass --allow-mixed"):
        open_dataset(path, cfg, other, False)
    with open_dataset(path, cfg, other, True) as ds:
        assert run_fingerprint(ds, other) is other
        assert set(ds.fingerprints()) == {old["hash"], other["hash"]}


def test_an_older_machine_calibration_is_this_machines(tmp_path, monkeypatch):
    """The machine calibration cache finds an entry made before cpu_ids, so files of one
    machine keep one scale across the upgrade."""
    import json

    from lenna.measure import machine_calibration as mc
    from lenna.space import get_space

    monkeypatch.setenv("LENNA_CACHE_DIR", str(tmp_path))
    space = get_space("lenna")
    key, fp = mc.machine_key(space, "cpu", "float32", 1)
    old = _legacy(fp)
    old_key = key.rsplit(":", 1)[0] + ":" + old["hash"]
    entry = {"reference_ms": 1.234, "reference_ratios": {"32x32": 9.5}, "fingerprint": old}
    (tmp_path / mc.FILE).write_text(json.dumps({"format": 1, "entries": {old_key: entry}}))

    def never(need_z0, anchors):
        raise AssertionError("calibrated again")

    answer = mc.machine_calibrate(space, "cpu", "float32", 1, never)
    assert answer(True, [(32, 32)]) == (1.234, {"32x32": 9.5})
