"""The timer (CPU clock; CUDA events, with fakes) and the gated bench around it."""

import numpy as np
import pytest
import torch

from lenna.errors import InputError
from lenna.measure import timer as timer_mod
from lenna.measure.bench import GatedBench
from lenna.measure.timer import Timer, resolve_device
from lenna.space import Block, get_space

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- Timer on CPU --------------------------------------------------------------------------
def test_cpu_timer_returns_positive_seconds_and_calls_once():
    calls = []

    def work():
        calls.append(1)
        return sum(range(2000))

    t = Timer("cpu")(work)
    assert isinstance(t, float)
    assert t > 0
    assert calls == [1]


def test_cpu_timer_converts_ns_to_seconds(monkeypatch):
    ticks = iter([1_000, 3_501_000])
    monkeypatch.setattr(timer_mod.time, "perf_counter_ns", lambda: next(ticks))
    assert Timer("cpu")(lambda: None) == pytest.approx(0.0035, rel=1e-12)


# ---- Timer on CUDA, with fakes -------------------------------------------------------------
class FakeCuda:
    """Records synchronize/Event calls in order; each end event reports ``ms`` after start."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.log: list[tuple] = []
        outer = self

        class Event:
            count = 0

            def __init__(self, enable_timing: bool = False) -> None:
                Event.count += 1
                self.id = Event.count
                self.enable_timing = enable_timing
                outer.log.append(("event", self.id, enable_timing))

            def record(self, stream=None) -> None:
                outer.log.append(("record", self.id))

            def synchronize(self) -> None:
                outer.log.append(("event_sync", self.id))

            def elapsed_time(self, end) -> float:
                outer.log.append(("elapsed", self.id, end.id))
                return outer.ms

        self.Event = Event

    def synchronize(self, device=None) -> None:
        self.log.append(("device_sync", str(device)))

    def device(self, device):
        """Stands in for ``torch.cuda.device``: logs entering and leaving the device context."""
        outer = self

        class Context:
            def __enter__(self):
                outer.log.append(("enter", str(device)))

            def __exit__(self, *exc):
                outer.log.append(("exit", str(device)))

        return Context()


def test_cuda_timer_brackets_the_call_with_events(monkeypatch):
    fake = FakeCuda(ms=12.5)
    monkeypatch.setattr(torch.cuda, "synchronize", fake.synchronize)
    monkeypatch.setattr(torch.cuda, "Event", fake.Event)
    monkeypatch.setattr(torch.cuda, "device", fake.device)
    timer = Timer("cuda:0")
    assert timer.cuda

    def fn():
        fake.log.append(("fn",))

    seconds = timer(fn)
    assert seconds == pytest.approx(0.0125, rel=1e-12)
    log = fake.log
    # everything happens inside the timer's device context (events on its stream), and the
    # queue is drained before anything else
    assert log[0] == ("enter", "cuda:0") and log[-1] == ("exit", "cuda:0")
    assert log[1] == ("device_sync", "cuda:0")
    events = [e for e in log if e[0] == "event"]
    assert len(events) == 2 and all(e[2] is True for e in events)  # enable_timing
    start, end = events[0][1], events[1][1]
    i = log.index
    assert i(("record", start)) < i(("fn",)) < i(("record", end))
    assert i(("record", end)) < i(("event_sync", end)) < i(("elapsed", start, end))
    assert log.count(("fn",)) == 1
    assert log.count(("device_sync", "cuda:0")) == 1


# ---- resolve_device ------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_resolve_device_cuda_without_cuda(device):
    with pytest.raises(InputError, match="CUDA"):
        resolve_device(device)


# ---- GatedBench ----------------------------------------------------------------------------
class CountingTimer(Timer):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.calls = 0

    def __call__(self, fn):
        self.calls += 1
        return super().__call__(fn)


def tiny_bench(block_type="reduction", channels=2, resolution=8, seed=0):
    space = get_space("lenna")
    alphas = np.random.default_rng(seed).normal(size=space.alpha_shape)
    block = Block(space, block_type, channels, "gated", alphas)
    x = torch.randn(1, channels, resolution, resolution)
    timer = CountingTimer()
    bench = GatedBench(block, (x,), timer, torch.Generator().manual_seed(seed))
    return space, block, bench, timer


def test_bench_reset_runs_one_untimed_pass_then_n_timed():
    space, block, bench, timer = tiny_bench()
    forwards = []
    block.register_forward_hook(lambda m, a, out: forwards.append(1))
    timer.calls = 0
    path = bench.reset()
    assert len(forwards) == 1  # the discarded outlier pass
    assert timer.calls == 0  # ... and it was not timed
    assert len(path) == space.num_edges
    mask = space.op_mask("reduction")
    assert all(mask[e, j] for e, j in enumerate(path))  # only real ops are sampled
    assert [edge.active for edge in block.edges.values()] == path
    times = bench.passes(4)
    assert len(forwards) == 1 + 4
    assert timer.calls == 4
    assert times.shape == (4,)
    assert (times > 0).all()
    assert not block.training  # eval mode: BN uses running stats


def test_bench_paths_follow_the_generator():
    *_, b1, _ = tiny_bench(seed=5)
    *_, b2, _ = tiny_bench(seed=5)
    assert [b1.reset() for _ in range(3)] == [b2.reset() for _ in range(3)]


def test_op_costs_nan_exactly_at_padded_slots_of_a_reduction_block():
    space, _, bench, _ = tiny_bench("reduction")
    costs = bench.op_costs(passes=1)
    assert costs.shape == space.alpha_shape
    mask = space.op_mask("reduction")
    np.testing.assert_array_equal(np.isnan(costs), ~mask)
    # lenna: down edges (leaving the block input) have 10 ops, slot 10 is padding
    down = [e.index for e in space.edges if e.src == 0]
    assert np.isnan(costs[down, 10]).all()
    assert not np.isnan(costs[down, :10]).any()
    same = [e.index for e in space.edges if e.src != 0]
    assert not np.isnan(costs[same]).any()
    assert (costs[mask] > 0).all()
    # edges of one kind share their costs
    np.testing.assert_array_equal(costs[down[0]], costs[down[-1]])


def test_op_costs_normal_block_has_no_padding():
    _, _, bench, _ = tiny_bench("normal")
    costs = bench.op_costs(passes=1)
    assert not np.isnan(costs).any()
    assert len(bench.edge_kinds()) == 1  # lenna normal: every edge alike
