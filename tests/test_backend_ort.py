"""The ONNX Runtime backend: a path assembled from pieces is the fixed cell, its labels belong
to their own fingerprint, and a missing extra is one line."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from measure_helpers import fast_measure, one_line_error, tiny_config, without_onnxruntime
from typer.testing import CliRunner

from lenna.cli import app
from lenna.errors import InputError
from lenna.measure import measure_block
from lenna.measure.backend import DISCARD_PASSES, session
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import config_fingerprint, fingerprint
from lenna.measure.machine_calibration import machine_key
from lenna.measure.onnx_pieces import Pieces, export_module
from lenna.measure.ort_bench import OrtGatedBench, gated_bench
from lenna.measure.ort_path import PathSessions, bound_call, module_call
from lenna.measure.runner import RunConfig, open_dataset, run_measurement, upgrade_config
from lenna.measure.timer import Timer
from lenna.search.timing import measure_config_from
from lenna.space import Block, cell_alphas, get_space, random_cell
from lenna.space.mixed import NONE_OP
from lenna.space.op_kinds import shared_leads

pytest.importorskip(
    "onnxruntime", reason="the onnx extra: pip install -e '.[onnx]' in the LENNA checkout"
)
pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()


def tie_weights(block: Block, paths: PathSessions) -> None:
    """Give the torch block the weights its pieces were exported with (pieces are shared by
    every module of one structure and input shape)."""
    for i, pre in enumerate(block.preprocess):
        pre.load_state_dict(paths.pieces.get(pre, block_input(paths, i)).module.state_dict())
    for k, edge in block.edges.items():
        for op in edge.ops:
            piece = paths.pieces.get(op, paths.edge_inputs[int(k)])
            op.load_state_dict(piece.module.state_dict())


def block_input(paths: PathSessions, i: int) -> torch.Tensor:
    return paths.inputs[i]


def ort_output(paths: PathSessions) -> np.ndarray:
    sess = session(paths.model().SerializeToString(), 1)
    return sess.run(None, paths.feed)[0]


@pytest.mark.parametrize("space_name", ["lenna", "darts"])
@pytest.mark.parametrize("block_type", ["normal", "reduction"])
def test_an_assembled_path_computes_what_the_gated_block_computes(space_name, block_type):
    sp = get_space(space_name)
    torch.manual_seed(0)
    block = Block(sp, block_type, 6, "gated").eval()
    xs = tuple(torch.randn(1, 6, 8, 8) for _ in range(sp.num_inputs))
    paths = PathSessions(block, xs, pieces=Pieces())
    paths.export_all()
    tie_weights(block, paths)
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        with torch.inference_mode():
            block.reset_gates(gen)
            want = block(*xs).numpy()
        got = ort_output(paths)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_timed_pass_writes_into_outputs_bound_once_and_computes_the_path():
    """A label's pass must not allocate its output (a network's arena holds it): the bound
    buffer stays the same across passes and paths seen again, and holds the path's output."""
    sp = get_space("lenna")
    torch.manual_seed(0)
    block = Block(sp, "reduction", 6, "gated").eval()
    xs = tuple(torch.randn(1, 6, 8, 8) for _ in range(sp.num_inputs))
    paths = PathSessions(block, xs, pieces=Pieces())
    paths.export_all()
    tie_weights(block, paths)
    gen = torch.Generator().manual_seed(3)
    seen: dict[tuple, int] = {}
    for _ in range(6):
        with torch.inference_mode():
            block.reset_gates(gen)
            want = block(*xs).numpy()
        paths.open()
        key = tuple(e.active for e in block.edges.values())
        (out,) = paths.run.bound[1]
        ptr = out.data_ptr()
        assert seen.setdefault(key, ptr) == ptr  # a path seen again keeps its buffers
        out.update_inplace(np.full(want.shape, np.nan, np.float32))  # so the pass must write
        assert paths.run() is None
        assert paths.run.args[0].get_outputs()[0].data_ptr() == ptr  # the binding's own
        np.testing.assert_allclose(paths.run.outputs()[0], want, rtol=1e-4, atol=1e-5)


def test_binding_runs_no_pass_so_a_new_sessions_passes_are_the_discarded_ones():
    class NoRun:
        """A session whose plain ``run`` must not be called."""

        def __init__(self, sess):
            self.sess, self.passes = sess, 0

        def run(self, *a):
            raise AssertionError("bound_call ran a pass")

        def run_with_iobinding(self, binding):
            self.passes += 1
            return self.sess.run_with_iobinding(binding)

        def __getattr__(self, name):
            return getattr(self.sess, name)

    net = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 8, 8)
    sess = NoRun(session(export_module(net, (x,)).SerializeToString(), 1))
    call = bound_call(sess, {"in0": x.numpy()})
    assert sess.passes == 0
    call()
    assert sess.passes == 1
    with torch.inference_mode():
        np.testing.assert_allclose(call.outputs()[0], net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_an_op_alone_is_timed_into_a_bound_output_too():
    sp = get_space("darts")
    block = Block(sp, "normal", 4, "gated").eval()
    xs = tuple(torch.randn(1, 4, 8, 8) for _ in range(sp.num_inputs))
    paths = PathSessions(block, xs, pieces=Pieces())
    edge = block.edges["0"]
    op = edge.ops[edge.op_names.index("sep_conv_3x3")]
    x = paths.edge_inputs[0]
    call = paths.op_call(op, x)
    (out,) = call.bound[1]
    out.update_inplace(np.full(out.shape(), np.nan, np.float32))  # so the pass must write
    assert call() is None
    with torch.inference_mode():
        want = paths.pieces.get(op, x).module(x).numpy()
    np.testing.assert_allclose(call.outputs()[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space_name", ["lenna", "darts"])
def test_an_assembled_derived_cell_computes_what_the_fixed_cell_computes(space_name):
    sp = get_space(space_name)
    rng = np.random.default_rng(5)
    for bt in ("normal", "reduction"):
        cell = random_cell(sp, bt, rng)
        torch.manual_seed(1)
        fixed = Block(sp, bt, 4, "fixed", choices=cell).eval()
        gated = Block(sp, bt, 4, "gated", cell_alphas(sp, bt, cell)).eval()
        xs = tuple(torch.randn(1, 4, 8, 8) for _ in range(sp.num_inputs))
        paths = PathSessions(gated, xs, pieces=Pieces())
        with torch.inference_mode():
            gated.reset_gates(torch.Generator().manual_seed(0))
        assert [None if a == NONE_OP else a for a in gated.active_ops()] == cell
        paths.export_all()
        tie_weights(gated, paths)
        for k, edge in fixed.edges.items():  # the fixed cell gets the gated block's weights
            g = gated.edges[k]
            edge.ops[0].load_state_dict(g.ops[g.active].state_dict())
        fixed.preprocess.load_state_dict(gated.preprocess.state_dict())
        with torch.inference_mode():
            want = fixed(*xs).numpy()
        np.testing.assert_allclose(ort_output(paths), want, rtol=1e-4, atol=1e-5)


def test_a_node_whose_sampled_inputs_are_all_none_is_zeros_as_in_torch():
    sp = get_space("darts")
    torch.manual_seed(0)
    block = Block(sp, "normal", 4, "gated").eval()
    xs = tuple(torch.randn(1, 4, 8, 8) for _ in range(2))
    paths = PathSessions(block, xs, pieces=Pieces())
    paths.export_all()
    tie_weights(block, paths)
    for k, edge in block.edges.items():  # node 2's edges (0, 1) none; the rest a real op
        src_node = next(e.dst for e in sp.edges if e.index == int(k))
        edge.active = edge.op_names.index(NONE_OP if src_node == 2 else "sep_conv_3x3")
    with torch.inference_mode():
        want = block(*xs).numpy()
    np.testing.assert_allclose(ort_output(paths), want, rtol=1e-4, atol=1e-5)
    assert np.all(want[:, :4] == 0)  # the empty node's slice of the concat


@pytest.mark.parametrize("space_name", ["lenna", "darts"])
def test_ort_runs_each_shared_lead_once_per_node_as_the_model_assumes(space_name, tmp_path):
    """The premise of ``additive``'s shared-lead terms (:func:`shared_leads`): the optimised
    graph of a path holds one ReLU / pool per node and lead, however many edges out of the
    node start with it. If a runtime stops merging them, the terms describe nothing. (Two
    rare paths are left out: a node that is only an identity of another is the same tensor,
    so ORT merges across the two as well; a node with every input ``none`` is a constant,
    and ORT folds what it feeds. The terms see neither. And where every edge out of a DARTS
    input starts with a ReLU, ORT fuses that one ReLU into the input's preprocessing
    convolution; the terms charge it, which moved held-out rows by under a point when tried.)"""
    import onnx

    from lenna.measure.backend import require_ort

    ort = require_ort()
    sp = get_space(space_name)
    gen = torch.Generator().manual_seed(7)
    for bt in ("normal", "reduction"):
        torch.manual_seed(0)
        block = Block(sp, bt, 16, "gated").eval()
        xs = tuple(torch.randn(1, 16, 8, 8) for _ in range(sp.num_inputs))
        paths = PathSessions(block, xs, pieces=Pieces())
        checked = 0
        while checked < 6:
            with torch.inference_mode():
                block.reset_gates(gen)
            if _has_alias_or_constant(block):
                continue
            checked += 1
            leads = {
                (e.src, shared_leads(sp, bt, e)[edge.active])
                for e, edge in zip(sp.edges, block.edges.values(), strict=True)
                if shared_leads(sp, bt, e)[edge.active] is not None
            }
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(paths.model().SerializeToString(), opts)
            ran = [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]
            # each input read by some edge is preprocessed with its own ReLU (on the block's
            # input, shared with nothing); an unread input's preprocessing is not assembled
            read = [i for i in range(len(block.preprocess)) if _reads(sp, block, i)]
            relus = sum(1 for _, k in leads if k.startswith("ReLU")) + len(read)
            relus -= sum(_relu_fused(sp, bt, block, i) for i in read)
            pools = sum(1 for _, k in leads if "Pool" in k)
            assert ran.count("Relu") == relus, (bt, block.active_ops(), ran)
            assert ran.count("MaxPool") + ran.count("AveragePool") == pools, (bt, ran)


def _reads(sp, block: Block, i: int) -> bool:
    """Whether some sampled edge reads input ``i``."""
    edges = zip(sp.edges, block.edges.values(), strict=True)
    return any(e.src == i and not edge.absent for e, edge in edges)


def _relu_fused(sp, bt: str, block: Block, i: int) -> bool:
    """Whether every sampled edge out of input ``i`` starts with a ReLU (then ORT runs it as
    the preprocessing convolution's activation)."""
    out = [(e, edge) for e, edge in zip(sp.edges, block.edges.values(), strict=True) if e.src == i]
    present = [(e, edge) for e, edge in out if not edge.absent]
    leads = [shared_leads(sp, bt, e)[edge.active] for e, edge in present]
    return bool(present) and all(k is not None and k.startswith("ReLU") for k in leads)


def _has_alias_or_constant(block: Block) -> bool:
    """Whether some node's one sampled input is an identity (that node is another's tensor) or
    it has none (a constant). Reads the block's private wiring: per node, its incoming edges."""
    for incoming in block._wiring:
        present = [edge for _, _, edge in incoming if not edge.absent]
        if not present:
            return True
        if len(present) == 1 and isinstance(present[0].ops[present[0].active], torch.nn.Identity):
            return True
    return False


def test_every_op_of_both_spaces_round_trips_as_a_piece():
    pieces = Pieces()
    for name in ("lenna", "darts"):
        sp = get_space(name)
        for bt in ("normal", "reduction"):
            block = Block(sp, bt, 4, "gated").eval()
            xs = tuple(torch.randn(1, 4, 8, 8) for _ in range(sp.num_inputs))
            paths = PathSessions(block, xs, pieces=pieces)
            for k, edge in block.edges.items():
                x = paths.edge_inputs[int(k)]
                for op_name, op in zip(edge.op_names, edge.ops, strict=True):
                    if op_name == NONE_OP:
                        continue
                    piece = pieces.get(op, x)
                    sess = session(piece.model.SerializeToString(), 1)
                    got = sess.run(None, {"x": x.numpy()})[0]
                    with torch.inference_mode():
                        want = piece.module(x).numpy()
                    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=op_name)


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (8, 7)])
def test_a_factorized_reduce_piece_has_a_pad_node_only_where_its_pad_is_read(hw):
    """At an even resolution the deployed graph (`lenna export`) has no pad, so neither may
    the piece a label is timed with; along an odd side the pad is real and kept."""
    from lenna.space.layers import FactorizedReduce

    x = torch.randn(1, 4, *hw)
    piece = Pieces().get(FactorizedReduce(4, 4).eval(), x)
    assert ("Pad" in {n.op_type for n in piece.model.graph.node}) == (hw != (8, 8))
    got = session(piece.model.SerializeToString(), 1).run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, piece.module(x).numpy(), rtol=1e-4, atol=1e-5)


def test_pieces_are_exported_once_per_structure_and_shape():
    sp = get_space("lenna")
    pieces = Pieces()
    xs = (torch.randn(1, 4, 8, 8),)
    PathSessions(Block(sp, "normal", 4, "gated").eval(), xs, pieces=pieces).export_all()
    first = pieces.exports
    assert first > 0
    PathSessions(Block(sp, "normal", 4, "gated").eval(), xs, pieces=pieces).export_all()
    assert pieces.exports == first  # another block of the same shape: nothing new
    small = (torch.randn(1, 4, 4, 4),)
    PathSessions(Block(sp, "normal", 4, "gated").eval(), small, pieces=pieces).export_all()
    assert pieces.exports > first  # another resolution: new pieces


def test_pieces_beyond_the_capacity_are_dropped_least_recent_first():
    pieces = Pieces(capacity=2)
    x = torch.randn(1, 4, 8, 8)
    mods = [torch.nn.Conv2d(4, 4, k, padding=k // 2) for k in (1, 3, 5)]
    for m in mods:
        pieces.get(m, x)
    assert len(pieces._cache) == 2
    pieces.get(mods[0], x)
    assert pieces.exports == 4  # the first was dropped and exported again


def test_every_reset_discards_the_new_sessions_slow_passes():
    sp = get_space("lenna")
    block = Block(sp, "normal", 4, "gated").eval()
    xs = (torch.randn(1, 4, 8, 8),)
    bench = OrtGatedBench(block, xs, Timer(), torch.Generator().manual_seed(0), discard=3)
    calls = []
    real_open = bench.sessions.open

    def counting_open():
        real_open()
        inner = bench.sessions.run
        bench.sessions.run = lambda: (calls.append(1), inner())

    bench.sessions.open = counting_open
    bench.reset()
    assert len(calls) == 3  # untimed
    times = bench.passes(2)
    assert len(calls) == 5 and times.shape == (2,) and np.all(times > 0)


def test_an_ort_label_is_a_positive_time_and_the_bench_is_ort():
    cfg = fast_measure(backend="onnxruntime")
    assert isinstance(
        gated_bench(cfg, Block(get_space("lenna"), "normal", 4, "gated").eval(),
                    (torch.randn(1, 4, 8, 8),), Timer(), torch.Generator()),
        OrtGatedBench,
    )  # fmt: skip
    m = measure_block("darts", "reduction", 4, 8, np.zeros((14, 8)), cfg)
    assert np.isfinite(m.latency_ms) and m.latency_ms > 0


def test_a_fixed_module_runs_in_ort_as_in_torch():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(2, 3, 8, 8)
    call = module_call(net, (x,))
    call.bound[1][0].update_inplace(np.full((2, 4, 8, 8), np.nan, np.float32))
    assert call() is None  # the pass writes into its bound outputs
    got = call.outputs()[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_the_two_backends_have_different_fingerprints_and_torchs_hash_is_unchanged():
    torch_fp = config_fingerprint(MeasureConfig())
    ort_fp = config_fingerprint(MeasureConfig(backend="onnxruntime"))
    assert torch_fp["hash"] == fingerprint("cpu", 1, "float32", 1)["hash"]
    assert "backend" not in torch_fp  # files measured before backends keep their hash
    assert ort_fp["backend"] == "onnxruntime" and ort_fp["hash"] != torch_fp["hash"]
    assert ort_fp["discard_passes"] == DISCARD_PASSES["onnxruntime"]
    assert ort_fp["outputs"] == "bound"  # labels from before bound outputs never mix in
    assert ort_fp["graphs"] == 2  # nor labels of graphs with a Pad the deployed one lacks
    sp = get_space("lenna")
    assert (
        machine_key(sp, "cpu", "float32", 1)[0]
        != machine_key(sp, "cpu", "float32", 1, "onnxruntime")[0]
    )


@pytest.mark.parametrize("key", ["outputs", "graphs"])
def test_an_ort_file_from_before_a_method_change_refuses_new_rows_even_with_allow_mixed(
    tmp_path, key
):
    path = tmp_path / "old.db"
    cfg = tiny_config(measure=fast_measure(backend="onnxruntime"))
    fp = config_fingerprint(cfg.measure)
    old = {k: v for k, v in fp.items() if k != key} | {"hash": "0123456789ab"}
    with open_dataset(path, cfg, old, False):
        pass
    for allow_mixed in (False, True):
        with pytest.raises(InputError, match=rf"differs in: {key}\); .*cannot be mixed"):
            open_dataset(path, cfg, fp, allow_mixed)
    other_cpu = fp | {"cpu_model": "Other CPU", "hash": "ba9876543210"}
    with open_dataset(tmp_path / "new.db", cfg, fp, False):
        pass
    with pytest.raises(InputError, match=r"differs in: cpu_model\); pass --allow-mixed"):
        open_dataset(tmp_path / "new.db", cfg, other_cpu, False)
    with open_dataset(tmp_path / "new.db", cfg, other_cpu, True):  # two machines: allowed
        pass


def test_a_file_of_one_backend_refuses_rows_of_another(tmp_path):
    path = tmp_path / "t.db"
    cfg = tiny_config()
    with open_dataset(path, cfg, config_fingerprint(cfg.measure), False):
        pass
    ort_cfg = tiny_config(measure=fast_measure(backend="onnxruntime"))
    with pytest.raises(InputError, match="other settings"):
        open_dataset(path, ort_cfg, config_fingerprint(ort_cfg.measure), allow_mixed=True)


def test_the_cli_refuses_another_backend_on_an_existing_file(tmp_path):
    path = tmp_path / "t.db"
    cfg = tiny_config()
    with open_dataset(path, cfg, config_fingerprint(cfg.measure), False):
        pass
    result = runner.invoke(
        app, ["measure", "--out", str(path), "-n", "1", "--backend", "onnxruntime"]
    )
    one_line_error(result, "backend torch in the file, onnxruntime now")


def test_a_file_from_before_backends_is_a_torch_file(tmp_path):
    d = tiny_config().to_dict()
    del d["measure"]["backend"]
    assert upgrade_config(d)["measure"]["backend"] == "torch"
    assert RunConfig.from_dict(d).measure.backend == "torch"


def test_verification_measures_in_the_predictors_backend_unless_told():
    rec = {"device": "cpu", "threads": 1, "backend": "onnxruntime", "reference_ms": 0.08}
    cfg = measure_config_from(rec)
    assert cfg.backend == "onnxruntime" and cfg.normalise
    other = measure_config_from(rec, backend="torch")
    assert other.backend == "torch" and not other.normalise  # an ORT Z0 means nothing here
    assert measure_config_from({}).backend == "torch"
    # cells are timed beside the references the labels were: a file of matched ORT labels
    assert cfg.reference == "narrow"  # none recorded: the backend's default
    assert measure_config_from({**rec, "reference": "matched"}).reference == "matched"
    other = measure_config_from({**rec, "reference": "matched"}, backend="torch")
    assert other.reference == "single"  # another backend: not normalised, nothing alongside


def test_a_predictor_records_which_reference_its_labels_were_timed_beside(tmp_path):
    from lenna.predict import load_data, train_predictor
    from lenna.search.timing import measured_as

    db = tmp_path / "d.db"
    run_measurement(db, tiny_config(), 8)
    data = load_data(db)
    assert data.reference == "matched" and data.subset(data.y > 0).reference == "matched"
    model = train_predictor(data, "elasticnet", seed=0)
    assert measured_as(model)["reference"] == "matched"
    assert measure_config_from(measured_as(model)).reference == "matched"


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"backend": "tensorrt"}, "unknown backend"),
        ({"backend": "onnxruntime", "dtype": "float16"}, "float32 only"),
    ],
)
def test_bad_backend_settings_are_refused(kw, needle):
    with pytest.raises(InputError, match=needle):
        MeasureConfig(**kw)


def test_the_cli_refuses_an_unknown_backend_in_one_line(tmp_path):
    result = runner.invoke(
        app, ["measure", "--space", "lenna", "-n", "1", "--out", str(tmp_path / "x.db"),
              "--backend", "tvm"],
    )  # fmt: skip
    one_line_error(result, "unknown backend")
    assert not (tmp_path / "x.db").exists()


def test_without_onnxruntime_the_backend_says_how_to_install(tmp_path, monkeypatch):
    without_onnxruntime(monkeypatch)
    with pytest.raises(InputError, match=r"pip install -e '\.\[onnx\]'"):
        MeasureConfig(backend="onnxruntime")
    assert MeasureConfig().backend == "torch"  # the default needs nothing extra
    out = tmp_path / "x.db"
    result = runner.invoke(
        app, ["measure", "--space", "lenna", "-n", "1", "--out", str(out), "--backend",
              "onnxruntime"],
    )  # fmt: skip
    one_line_error(result, "pip install -e '.[onnx]' in the LENNA checkout")
    assert not out.exists()


def test_an_ort_dataset_records_its_backend(tmp_path):
    from lenna.measure.runner import run_measurement

    path = tmp_path / "o.db"
    cfg = tiny_config(measure=fast_measure(backend="onnxruntime", normalise=False))
    run_measurement(path, cfg, 2)
    con = sqlite3.connect(path)
    try:
        (n,) = con.execute("SELECT COUNT(*) FROM samples").fetchone()
        infos = [r[0] for r in con.execute("SELECT info FROM fingerprints")]
    finally:
        con.close()
    assert n == 2 and all('"backend": "onnxruntime"' in i for i in infos)


def test_evaluate_arch_measures_in_the_backend_asked_for(tmp_path):
    from search_helpers import cheap_genotype

    g = cheap_genotype("darts").save(tmp_path / "genotype.json")
    args = ["evaluate-arch", str(g), "--epochs", "0", "--json", "--data", "synthetic"]
    result = runner.invoke(app, [*args, "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout[result.stdout.index("{") :])
    assert res["backend"] == "onnxruntime"
    assert res["fingerprint"]["backend"] == "onnxruntime"
    assert res["measured_ms"] > 0 and len(res["measured_per_cell_ms"]) == 2
    one_line_error(runner.invoke(app, [*args, "--backend", "tflite"]), "unknown backend")


def test_the_demo_refuses_an_unknown_backend_before_writing(tmp_path):
    out = tmp_path / "demo"
    one_line_error(
        runner.invoke(app, ["demo", "--quick", "--out", str(out), "--backend", "x"]),
        "unknown backend",
    )
    assert not out.exists()


def test_the_report_names_the_runtime_of_its_latencies():
    from lenna.report.demo_report import runtime_phrase

    ort_fp = config_fingerprint(MeasureConfig(backend="onnxruntime"))
    assert "ONNX Runtime" in runtime_phrase(ort_fp)
    assert "eager" in runtime_phrase(config_fingerprint(MeasureConfig()))


def test_a_fleet_device_measures_in_the_datasets_backend():
    from lenna.measure.fleet import Measurer

    cfg = tiny_config(measure=fast_measure(backend="onnxruntime", normalise=False))
    device = Measurer(cfg.to_dict())
    assert device.fingerprint()["backend"] == "onnxruntime"
    row = device.measure(0)
    assert row["fingerprint"] == config_fingerprint(cfg.measure)["hash"]
    assert row["latency_ms"] > 0


def test_a_new_ort_file_times_narrow_blocks_beside_narrow_anchors(tmp_path):
    from lenna.cli.measure import _build_config

    new = tmp_path / "new.db"
    assert _build_config(new, space="lenna", backend="onnxruntime").measure.reference == "narrow"
    asked = _build_config(new, space="lenna", backend="onnxruntime", reference="matched")
    assert asked.measure.reference == "matched"
    assert _build_config(new, space="lenna").measure.reference == "matched"  # torch
    # a file keeps the reference it began with
    old = tmp_path / "old.db"
    with open_dataset(old, asked, config_fingerprint(asked.measure), False):
        pass
    assert _build_config(old, backend="onnxruntime").measure.reference == "matched"
    assert _build_config(old).measure.reference == "matched"


def test_a_new_ort_file_draws_with_sampler_version_4_and_a_file_keeps_its_own(tmp_path):
    from lenna.cli.measure import _build_config

    new = tmp_path / "new.db"
    assert _build_config(new, space="lenna", backend="onnxruntime").sampler_version == 4
    assert _build_config(new, space="lenna").sampler_version == 3  # torch
    asked = _build_config(new, space="darts", backend="onnxruntime", sampler_version=3)
    assert asked.sampler_version == 3
    assert (
        RunConfig(space="lenna", measure=MeasureConfig(backend="onnxruntime")).sampler_version == 4
    )
    # a file resumes with the version it began with, under either backend option
    old = tmp_path / "old.db"
    with open_dataset(old, asked, config_fingerprint(asked.measure), False):
        pass
    assert _build_config(old).sampler_version == 3
    assert _build_config(old, backend="onnxruntime").sampler_version == 3


@pytest.mark.slow
def test_the_cv_rule_the_reference_and_the_drift_guard_run_under_ort(tmp_path, monkeypatch):
    """Issue 27, item 5: the control variate's op costs are timed in ORT, the reference is
    an ORT session of its fixed path, and an ORT file runs its drift guard and its op table."""
    import lenna.measure.reference as reference_mod
    from lenna.measure.runner import run_op_table
    from lenna.measure.store import Dataset

    monkeypatch.setattr(reference_mod, "_REFERENCES", {})  # built here, not by earlier tests
    timed_ops = []
    real = OrtGatedBench._op_call

    def spy(self, op, x):
        timed_ops.append(type(op).__name__)
        return real(self, op, x)

    monkeypatch.setattr(OrtGatedBench, "_op_call", spy)
    opened = []
    real_open = PathSessions.open

    def open_spy(self, *a, **k):
        opened.append(self.block)
        return real_open(self, *a, **k)

    monkeypatch.setattr(PathSessions, "open", open_spy)
    cv = MeasureConfig(
        backend="onnxruntime", rule="cv", rule_params={"min_resets": 3, "max_resets": 5}
    )
    space = get_space("lenna")
    m = measure_block(space, "normal", 4, 8, np.zeros(space.alpha_shape), cv)  # uniform α
    e = m.estimate
    assert e.rule == "cv" and timed_ops  # the control's op costs, each op alone in ORT
    assert len(e.controls_ms) == e.resets and np.all(np.isfinite(e.controls_ms))
    assert np.ptp(e.controls_ms) > 0  # the sampled paths' op costs differ: a real control
    assert e.reference_ms is not None and len(e.references_ms) == e.resets
    refs = list(reference_mod._REFERENCES.items())
    assert refs and all(key[4] == "onnxruntime" for key, _ in refs)
    assert all(any(b is ref.block for b in opened) for _, ref in refs)  # an ORT session

    benches = []
    init = OrtGatedBench.__init__

    def counted(self, *a, **k):
        benches.append(self)
        init(self, *a, **k)

    monkeypatch.setattr(OrtGatedBench, "__init__", counted)
    db = tmp_path / "o.db"
    cfg = tiny_config(measure=cv, drift_every=1)
    assert run_measurement(db, cfg, 2) == 2
    n_benches = len(benches)
    timed_ops.clear()
    run_op_table(db, cfg, channels=(2, 2), resolutions=(8,), passes=2)
    assert timed_ops  # the op table is timed in ORT as well
    with Dataset.open(db, readonly=True) as ds:
        assert ds.meta["fingerprint"]["backend"] == "onnxruntime"
        drift = ds.drift()
        table = ds.op_table()
    assert list(drift["after_samples"]) == [1, 2] and np.all(drift["latency_ms"] > 0)
    assert n_benches == 2 + 1 + 2  # the rows, the control's first value and two checks: ORT
    assert len(table) > 0 and np.all(np.isfinite(table["latency_ms"]))
