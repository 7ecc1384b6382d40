"""The two preset spaces and the space registry."""

from __future__ import annotations

from lenna.errors import InputError
from lenna.space.spec import SearchSpace

# Seed order: 3x3_Conv, 5x5_Conv, 3x3_ConvDW, 5x5_ConvDW, 3x3_dConv, 5x5_dConv, ...
_SEED_CONVS = tuple(
    f"{k}x{k}_{d}{kind}" for d in ("", "d") for kind in ("Conv", "ConvDW") for k in (3, 5)
)

LENNA = SearchSpace(
    name="lenna",
    description="The seed's block: 1 input, 5 layers, 15 edges; output = last node.",
    num_inputs=1,
    num_nodes=5,
    ops=(*_SEED_CONVS, "3x3_maxpool", "3x3_avgpool", "Identity"),
    down_ops=(*_SEED_CONVS, "2x2_maxpool", "2x2_avgpool"),
    output="last",
    preprocess=False,
    derive_rule="edge_argmax",
)

_DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

DARTS = SearchSpace(
    name="darts",
    description="The DARTS cell (Liu et al. 2019): 2 inputs, 4 nodes, 14 edges; output = concat.",
    num_inputs=2,
    num_nodes=4,
    ops=_DARTS_OPS,
    down_ops=_DARTS_OPS,
    output="concat",
    preprocess=True,
    derive_rule="top2_non_none",
)

_SPACES: dict[str, SearchSpace] = {}


def register_space(space: SearchSpace) -> SearchSpace:
    """Make ``space`` available to :func:`get_space` and the CLI."""
    if space.name in _SPACES:
        raise ValueError(f"space {space.name!r} is already registered")
    _SPACES[space.name] = space
    return space


def list_spaces() -> list[str]:
    return list(_SPACES)


def get_space(name: str) -> SearchSpace:
    """The registered space called ``name``, or an :class:`InputError` naming the choices."""
    if name not in _SPACES:
        raise InputError(f"unknown space {name!r}; expected one of: {', '.join(_SPACES)}")
    return _SPACES[name]


register_space(LENNA)
register_space(DARTS)
