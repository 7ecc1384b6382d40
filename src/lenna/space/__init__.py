"""Search spaces: op registry, presets, mixed edges, blocks, feature encoding."""

from lenna.space import ops as _ops  # noqa: F401  (registers the ops)
from lenna.space.block import Block
from lenna.space.derive import cell_alphas, derive, neighbours, random_cell
from lenna.space.encode import encode, probabilities
from lenna.space.mixed import MODES, MixedEdge
from lenna.space.presets import get_space, list_spaces, register_space
from lenna.space.registry import build_op, list_ops, register_op
from lenna.space.spec import BLOCK_TYPES, Edge, SearchSpace

__all__ = [
    "BLOCK_TYPES",
    "MODES",
    "Block",
    "Edge",
    "MixedEdge",
    "SearchSpace",
    "build_op",
    "cell_alphas",
    "derive",
    "encode",
    "get_space",
    "list_ops",
    "list_spaces",
    "neighbours",
    "probabilities",
    "random_cell",
    "register_op",
    "register_space",
]
