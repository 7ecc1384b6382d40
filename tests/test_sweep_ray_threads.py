"""A sweep's Ray tasks: each declares the CPUs its torch uses, so packed tasks do not
oversubscribe a node (a fake Ray records what each task asked for and was given)."""

from pathlib import Path

import pytest

import lenna.measure.fleet as fleet
from lenna.search import SearchConfig
from lenna.search.sweep import _run_on_ray


class FakeRay:
    """Runs nothing: records the task's resource options and the config each task got."""

    def __init__(self) -> None:
        self.options: dict = {}
        self.configs: list[SearchConfig] = []

    def remote(self, **options):
        self.options = options

        def wrap(fn):
            ray = self

            class Task:
                @staticmethod
                def remote(base, lam, *rest):
                    ray.configs.append(base)
                    return {"lam": lam}

            return Task

        return wrap

    def get(self, refs):
        return refs


@pytest.mark.parametrize(("threads", "expected"), [(None, 1), (3, 3)])
def test_each_task_uses_the_cpus_it_declares(monkeypatch, tmp_path, threads, expected):
    ray = FakeRay()
    monkeypatch.setattr(fleet, "connect", lambda address: ray)
    base = SearchConfig(threads=threads)
    rows = _run_on_ray(base, [(0.0, None), (1.0, None)], tmp_path, 0, None, None, "local")
    assert rows == [{"lam": 0.0}, {"lam": 1.0}]
    assert ray.options["num_cpus"] == expected
    assert ray.options["num_gpus"] == 0
    assert [c.threads for c in ray.configs] == [expected, expected]


def test_a_gpu_task_takes_one_gpu_and_its_predictor_by_absolute_path(monkeypatch, tmp_path):
    ray = FakeRay()
    monkeypatch.setattr(fleet, "connect", lambda address: ray)
    monkeypatch.chdir(tmp_path)
    base = SearchConfig(device="cuda:1", predictor="models/m")
    _run_on_ray(base, [(1.0, None)], tmp_path, 0, None, None, "local")
    assert ray.options == {"num_cpus": 1, "num_gpus": 1}
    (cfg,) = ray.configs
    assert cfg.device == "cuda"
    assert Path(cfg.predictor) == tmp_path / "models" / "m"
