"""ONNX Runtime sessions of a gated block's sampled paths, each the fixed cell it stands for.

Why a session per distinct path: a path is assembled from exported pieces
(:mod:`lenna.measure.onnx_pieces`) and opened in a few ms; a peaked α samples the same path
again and again, and its session is then reused (it is the same fixed cell). A new session runs
its first passes slow, so every switch of path discards passes before any is timed
(:data:`lenna.measure.backend.DISCARD_PASSES`).

Why every timed call writes into outputs bound once (:func:`bound_call`): ``session.run``
allocates each output anew and hands it to numpy, 3–55 µs a call on this kind of host (more for
larger outputs: fresh pages), up to 15 % of a cheap cell. Inside a network a cell's output
comes from ORT's arena, reused pass after pass, so a label that paid for it would be the time
of the cell *plus* a cost the deployed network does not have, and a network's cells would sum
to more than the network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from lenna.measure.backend import require_ort, session
from lenna.measure.onnx_pieces import Piece, Pieces, assemble, export_module, shared_pieces
from lenna.measure.probe import probe_edge_inputs
from lenna.space import Block

MAX_SESSIONS = 32  # per block; a path seen again after more distinct ones is opened anew
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class PathSessions:
    """Runs ``block``'s current path (its gates as sampled) in ONNX Runtime on ``inputs``."""

    def __init__(
        self,
        block: Block,
        inputs: tuple[torch.Tensor, ...],
        threads: int = 1,
        pieces: Pieces | None = None,
        edge_inputs: dict[int, torch.Tensor] | None = None,
    ) -> None:
        self.block, self.inputs, self.threads = block, inputs, threads
        self.pieces = pieces or shared_pieces()
        self.edge_inputs = edge_inputs or probe_edge_inputs(block, inputs)
        self.feed = {f"in{i}": x.detach().cpu().numpy() for i, x in enumerate(inputs)}
        self._sessions: OrderedDict[tuple, object] = OrderedDict()
        self._current: object | None = None

    def open(self) -> None:
        """Make the block's current path the one :meth:`run` runs."""
        key = tuple(e.active for e in self.block.edges.values())
        if key in self._sessions:
            self._sessions.move_to_end(key)
        else:
            model = assemble(self.block, self.inputs, self.edge_inputs, self.pieces)
            sess = session(model.SerializeToString(), self.threads)
            self._sessions[key] = (sess, bound_call(sess, self.feed))
            if len(self._sessions) > MAX_SESSIONS:  # each holds weights and an arena
                self._sessions.popitem(last=False)
        self._current, call = self._sessions[key]
        # the bound call itself, no Python frame of ours around it (~1 µs of a 50-µs cell)
        self.run = call  # type: ignore[method-assign]

    def run(self) -> None:
        """One pass of the current path (replaced by the session's own call on :meth:`open`)."""
        raise RuntimeError("no path is open: call open() first")

    def model(self) -> object:
        """The ONNX model of the current path (for checks and benchmarks)."""
        return assemble(self.block, self.inputs, self.edge_inputs, self.pieces)

    def op_call(self, op: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        """One call of ``op`` alone on ``x`` in its own session (an op's cost under ORT)."""
        piece = self.pieces.get(op, x)
        sess = _piece_session(piece, self.threads)
        return bound_call(sess, {"x": x.detach().cpu().numpy()})

    def export_all(self) -> None:
        """Export every candidate op of every edge (and the preprocessing) now, so no export
        happens between a reset and its timed passes."""
        for i, pre in enumerate(self.block.preprocess):
            self.pieces.get(pre, self.inputs[i])
        for k, edge in self.block.edges.items():
            for name, op in zip(edge.op_names, edge.ops, strict=True):
                if name != "none":
                    self.pieces.get(op, self.edge_inputs[int(k)])


def module_call(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int = 1
) -> Callable[[], object]:
    """One pass of a fixed ``module`` on ``inputs`` in ONNX Runtime (exported once), into
    outputs bound once (:func:`bound_call`)."""
    sess = session(export_module(module, inputs).SerializeToString(), threads)
    return bound_call(sess, {f"in{i}": x.detach().cpu().numpy() for i, x in enumerate(inputs)})


def bound_call(sess: object, feed: dict) -> Callable[[], object]:
    """One pass of ``sess`` on ``feed`` whose outputs go into buffers allocated once, as a
    network's arena would hold them (module docstring); the inputs are bound once too. The
    buffers are ORT's own, of each output's declared shape and type, so binding costs no pass
    (a new session's passes stay the discarded ones); an output of unknown shape takes its
    buffer from one untimed pass. The call returns nothing; its ``outputs()`` gives the last
    pass's outputs as numpy arrays."""
    ort = require_ort()
    binding = sess.io_binding()  # type: ignore[attr-defined]
    ins = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feed.items()}
    for name, value in ins.items():
        binding.bind_ortvalue_input(name, value)
    declared = sess.get_outputs()  # type: ignore[attr-defined]
    if all(o.type in NUMPY_TYPES and all(isinstance(d, int) for d in o.shape) for o in declared):
        outs = [
            ort.OrtValue.ortvalue_from_shape_and_type(list(o.shape), NUMPY_TYPES[o.type])
            for o in declared
        ]
    else:  # a symbolic dimension: the shape a pass gives
        first = sess.run(None, feed)  # type: ignore[attr-defined]
        outs = [ort.OrtValue.ortvalue_from_numpy(v) for v in first]
    for out, value in zip(declared, outs, strict=True):
        binding.bind_ortvalue_output(out.name, value)
    call = partial(sess.run_with_iobinding, binding)  # type: ignore[attr-defined]
    # the binding may not hold its values (older ORT): they live as long as the call
    call.bound = (ins, outs)  # type: ignore[attr-defined]
    call.outputs = lambda: [o.numpy() for o in outs]  # type: ignore[attr-defined]
    return call


def _piece_session(piece: Piece, threads: int) -> object:
    if threads not in piece.sessions:
        piece.sessions[threads] = session(piece.model.SerializeToString(), threads)
    return piece.sessions[threads]
