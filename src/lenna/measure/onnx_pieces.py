"""A sampled path as ONNX Runtime runs the fixed cell, assembled from per-op ONNX pieces.

Why: a label under ONNX Runtime must be the time of the *fixed* cell the path stands for (ORT
fuses and re-lays-out a fixed graph; one graph with every op behind ``If`` nodes read 1.4–1.8×
too high), but exporting the cell again at every gate reset costs 0.06–1 s. So each candidate
module is exported once per (module, input shape) as a *piece* with one input and one output,
and a path's graph is put together from its pieces, the node sums and the output exactly as
:meth:`lenna.space.Block.forward` computes them; a new session of it costs a few ms.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from lenna.measure.backend import require_ort
from lenna.space import Block

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17, which every ONNX Runtime since 1.14 reads
MAX_PIECES = 1024  # least recently used pieces are dropped beyond this (their weights' memory)


@dataclass
class Piece:
    """One exported module: its graph (input ``x``, output ``y``) and output shape."""

    model: object  # onnx.ModelProto
    out_shape: tuple[int, ...]
    module: nn.Module  # the exported weights (a copy), so a test can give torch the same
    sessions: dict = field(default_factory=dict)  # threads -> the piece alone in a session


class Pieces:
    """Exported modules, keyed by what decides their graph: the module's structure (its
    ``repr``: op, channels, kernel, stride, dilation) and the input's shape and dtype."""

    def __init__(self, capacity: int = MAX_PIECES) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple, Piece] = OrderedDict()
        self.exports = 0  # how many exports ran (a test sees the cache work)

    def get(self, module: nn.Module, x: torch.Tensor) -> Piece:
        key = (repr(module), tuple(x.shape), str(x.dtype))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        piece = export_piece(module, x)
        self.exports += 1
        self._cache[key] = piece
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return piece


_PIECES = Pieces()


def shared_pieces() -> Pieces:
    """The process's pieces: blocks of one shape share their ops' exports."""
    return _PIECES


def export_piece(module: nn.Module, x: torch.Tensor) -> Piece:
    """``module`` (eval mode, a copy) on an input shaped like ``x`` as an ONNX model.

    The TorchScript exporter, because the dynamo one takes ~1 s a module. ORT optimises
    both exports to graphs of the same op counts (``benchmarks/diagnostics/ort_assembled.py``)
    as long as no op pads what its next convolution never reads: this exporter keeps such a
    pad as a node of its own, the dynamo one folds it away. ``benchmarks/backends.py`` times
    the assembled cell against a dynamo export."""
    onnx = require_ort() and __import__("onnx")
    buf = io.BytesIO()
    # the exporter traces with autograd on: no inference tensors (a bench's inputs are some)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        mod, x = copy.deepcopy(module).eval(), x.clone()
        out_shape = tuple(mod(x).shape)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            mod, (x,), buf, dynamo=False, opset_version=OPSET, input_names=["x"],
            output_names=["y"], do_constant_folding=True,
        )  # fmt: skip
    return Piece(onnx.load_from_string(buf.getvalue()), out_shape, mod)


def export_module(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> object:
    """A whole fixed module (a derived network or cell) as one ONNX model, inputs ``in0``…,
    output ``out``, at the inputs' shapes (the TorchScript exporter, as for pieces)."""
    onnx = require_ort() and __import__("onnx")
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        mod = copy.deepcopy(module).eval()
        xs = tuple(x.clone() for x in inputs)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            mod, xs, buf, dynamo=False, opset_version=OPSET,
            input_names=[f"in{i}" for i in range(len(xs))], output_names=["out"],
            do_constant_folding=True,
        )  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


class _Graph:
    """Nodes and initialisers being put together, with unique names per use of a piece."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []

    def splice(self, piece: Piece, src: str, dst: str, prefix: str) -> None:
        """Add ``piece``'s graph reading tensor ``src`` and writing tensor ``dst``."""
        from onnx import helper

        g = piece.model.graph
        names = {"x": src, "y": dst}

        def rename(n: str) -> str:
            return n if n == "" else names.setdefault(n, prefix + n)

        for init in g.initializer:
            new = copy.copy(init)
            new.CopyFrom(init)
            new.name = rename(init.name)
            self.inits.append(new)
        produced = False
        for node in g.node:
            new = copy.copy(node)
            new.CopyFrom(node)
            del new.input[:], new.output[:]
            new.input.extend(rename(n) for n in node.input)
            new.output.extend(rename(n) for n in node.output)
            new.name = prefix + (node.name or node.op_type)
            produced |= dst in new.output
            self.nodes.append(new)
        if not produced:  # the export wired its input straight to its output
            self.nodes.append(helper.make_node("Identity", [src], [dst], name=prefix + "id"))


def assemble(
    block: Block,
    inputs: tuple[torch.Tensor, ...],
    edge_inputs: dict[int, torch.Tensor],
    pieces: Pieces,
) -> object:
    """The ONNX model of ``block``'s current path (its gates as sampled) as the fixed cell:
    inputs ``in0``…, output ``out``. ``edge_inputs``: an example input per edge (shapes)."""
    from onnx import TensorProto, helper, numpy_helper

    g, sp = _Graph(), block.space
    states, shapes = [], []
    for i, x in enumerate(inputs):
        if block.preprocess:
            piece = pieces.get(block.preprocess[i], x)
            g.splice(piece, f"in{i}", f"s{i}", f"pre{i}/")
            states.append(f"s{i}")
            shapes.append(piece.out_shape)
        else:
            states.append(f"in{i}")
            shapes.append(tuple(x.shape))
    for node, incoming in enumerate(block._wiring, start=sp.num_inputs):
        total = None
        for k, src, edge in incoming:
            if edge.absent:  # a sampled `none`: the derived cell has no such edge
                continue
            piece = pieces.get(edge.ops[edge.active], edge_inputs[k])
            g.splice(piece, states[src], f"e{k}", f"e{k}/")
            if total is None:
                total, shape = f"e{k}", piece.out_shape
            else:  # ((a + b) + c): the order torch adds them in
                g.nodes.append(helper.make_node("Add", [total, f"e{k}"], [f"sum{k}"]))
                total = f"sum{k}"
        if total is None:  # every sampled input `none`: the zeros torch allocates
            shape = _empty_shape(block, shapes)
            total = f"zeros{node}"
            g.inits.append(numpy_helper.from_array(torch.zeros(shape).numpy(), total))
        states.append(total)
        shapes.append(shape)
    if sp.output == "concat":
        g.nodes.append(helper.make_node("Concat", states[sp.num_inputs :], ["out"], axis=1))
    else:
        g.nodes.append(helper.make_node("Identity", [states[-1]], ["out"]))
    graph = helper.make_graph(
        g.nodes,
        f"{sp.name}_{block.block_type}_path",
        [
            helper.make_tensor_value_info(f"in{i}", TensorProto.FLOAT, list(x.shape))
            for i, x in enumerate(inputs)
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=g.inits,
    )
    opset = [helper.make_opsetid("", OPSET)]
    return helper.make_model(graph, opset_imports=opset, ir_version=IR_VERSION)


def _empty_shape(block: Block, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of a node with no sampled input, as :meth:`Block._empty_node` makes it."""
    n, _, h, w = shapes[block.space.num_inputs - 1]
    s = block._stride
    return (n, block._width, -(-h // s), -(-w // s))
