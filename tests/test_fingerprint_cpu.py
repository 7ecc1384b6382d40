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


def test_cpu_id_names_generation_cache_and_instruction_sets():
    assert cpu_id(MILAN) == "family 25 model 1 stepping 1, 512 KB, avx2 fma"
    assert cpu_id(GENOA) == "family 25 model 17 stepping 1, 512 KB, avx2 fma avx512f avx512_bf16"
    assert cpu_id("") == "family ? model ? stepping ?, ? cache, no avx2"


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
