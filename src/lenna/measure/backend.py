"""The runtime a label is the time of: PyTorch eager (``torch``) or ONNX Runtime.

Why: a runtime does not rescale latency, it reorders op costs (on a CPU, ONNX Runtime runs a
max-pool in a tenth of eager mode's time and a 3×3 convolution in half). A predictor trained
on eager labels steers a search toward ops that are cheap in eager mode, not in the runtime the
user deploys with, so the backend is part of what a label means: of the measurement config and
of the fingerprint (a file of one backend refuses rows of another). See docs/measurement.md.

``onnx`` and ``onnxruntime`` are an optional extra; without them the backend fails in one line.
"""

from __future__ import annotations

from types import ModuleType

from lenna.errors import InputError

BACKENDS = ("torch", "onnxruntime")
INSTALL = (
    "the onnxruntime backend needs the onnx extra: pip install -e '.[onnx]' in the LENNA checkout"
)
# ORT's graph optimisations as a deployment would run them (fusions, layout, constant folding)
GRAPH_OPTIMIZATION = "all"
PROVIDER = "CPUExecutionProvider"
# passes discarded after every gate reset: torch's first pass of a new path is an outlier; a
# new ORT session's first passes run slow (median 1.66×, 1.13×, 1.03×, 1.02×, then ≤ 1.006× of
# its settled time; benchmarks/backends.py prints the curve)
DISCARD_PASSES = {"torch": 1, "onnxruntime": 5}
# how a timed ORT call gets its outputs: "bound" = into buffers bound once, as a network's arena
# holds them (lenna.measure.ort_path.bound_call). Files measured before it have no such key:
# their labels include allocating each output (3–55 µs a call), so the two never mix silently.
ORT_OUTPUTS = "bound"
# how a path's ONNX graph is built, as a version: 2 = a DARTS FactorizedReduce at an even
# resolution exports no Pad node (lenna.space.layers). Files measured before it have no such
# key: a Pad that `lenna export`'s graph folds away cost their labels 10–30 µs per reduce.
ORT_GRAPHS = 2
# fingerprint fields that say how a label is timed, not on what: files that differ in one hold
# labels of two methods, which --allow-mixed (meant for two machines) must not mix
METHOD_KEYS = (
    "backend", "graph_optimization", "provider", "discard_passes", "outputs", "graphs",
)  # fmt: skip


def require_ort() -> ModuleType:
    """``onnxruntime`` (with ``onnx``), or one line that says how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise InputError(INSTALL) from None
    return onnxruntime


def check_backend(backend: str, device: str, dtype: str) -> None:
    """Refuse an unknown backend, or ONNX Runtime where it cannot run here."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        require_ort()
        if device.split(":")[0] != "cpu":
            raise InputError(
                f"the onnxruntime backend measures on the cpu only (asked for {device!r})"
            )
        if dtype != "float32":
            raise InputError(f"the onnxruntime backend measures float32 only (asked for {dtype})")


def session(model: bytes, threads: int) -> object:
    """An ONNX Runtime session of a serialised model, set up as labels are timed: every graph
    optimisation, ``threads`` intra-op threads, one inter-op thread, sequential execution."""
    ort = require_ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # warnings about unused initialisers are not the user's
    if threads > 1:  # idle workers that spin would steal the next session's cores (paired timing)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=opts, providers=[PROVIDER])


def backend_info(backend: str) -> dict:
    """What of the backend belongs in a fingerprint: nothing for ``torch`` (whose version is
    there already; older files keep their hashes), the runtime's version, graph
    optimisation, execution provider, inter-op threads, how outputs are held and how a
    path's graph is built for ONNX Runtime."""
    if backend == "torch":
        return {}
    ort = require_ort()
    return {
        "backend": backend,
        "onnxruntime": ort.__version__,
        "graph_optimization": GRAPH_OPTIMIZATION,
        "provider": PROVIDER,
        "inter_op_threads": 1,
        "discard_passes": DISCARD_PASSES[backend],
        "outputs": ORT_OUTPUTS,
        "graphs": ORT_GRAPHS,
    }
