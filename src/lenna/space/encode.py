"""Feature encoding of a block under α, identical in numpy and in torch.

Layout (``space.feature_names()``): ``is_normal`` (seed: normal 1, reduction 0), ``channels``
(the block's input channels), ``num_edges × max_ops`` probabilities = softmax(α) over each
edge's real ops, padded with 0, then ``resolution`` (input H = W), the one feature added to
the seed's 167. The torch path is differentiable in α so a predictor built on it can sit
inside the search loss; the probabilities here are the same ones the gates sample from.
"""

from __future__ import annotations

import numpy as np
import torch

from lenna.errors import InputError
from lenna.space.spec import SearchSpace

Alphas = np.ndarray | torch.Tensor
# (id(space), block type, device) -> (space, its op mask there): the space is held, so its id
# is never another's; spaces are few (the registry's), so is this
_MASKS: dict[tuple[int, str, torch.device], tuple[SearchSpace, torch.Tensor]] = {}


def torch_mask(space: SearchSpace, block_type: str, device: torch.device) -> torch.Tensor:
    """The op mask of ``block_type`` as a tensor on ``device``, made once: copying it from the
    host at every forward pass would make the CPU wait for the GPU each time, and no CUDA graph
    can hold such a copy (:mod:`lenna.search.graphed`)."""
    key = (id(space), block_type, torch.device(device))
    if key not in _MASKS:
        with torch.inference_mode(False):  # a normal tensor, whatever mode its first caller is in
            _MASKS[key] = (space, torch.as_tensor(space.op_mask(block_type), device=device))
    return _MASKS[key][1]


def probabilities(
    space: SearchSpace, block_type: str, alphas: Alphas, check_values: bool = True
) -> Alphas:
    """softmax(α) per edge over that edge's ops; padded slots are exactly 0. ``check_values``
    False: finite α are not checked (a search's hot path on a GPU, where the check would make
    the CPU wait for the GPU at every pass; the search checks α once an epoch instead)."""
    if isinstance(alphas, torch.Tensor):
        _check_torch(space, alphas, check_values)
        m = torch_mask(space, block_type, alphas.device)
        return torch.softmax(alphas.masked_fill(~m, float("-inf")), dim=-1)
    a = space.check_alphas(alphas)
    z = np.where(space.op_mask(block_type), a, -np.inf)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def encode(
    space: SearchSpace,
    block_type: str,
    channels: int | float | torch.Tensor,
    resolution: int | float | torch.Tensor,
    alphas: Alphas,
    check_values: bool = True,
) -> Alphas:
    """Feature vector of one block (numpy) or a batch ``(..., E, K) -> (..., F)`` (torch);
    ``check_values`` as for :func:`probabilities`."""
    is_normal = 1.0 if space.check_block_type(block_type) == "normal" else 0.0
    if not isinstance(alphas, torch.Tensor):
        space.check(block_type, channels, resolution)
        p = probabilities(space, block_type, alphas)
        return np.concatenate([[is_normal, float(channels)], p.ravel(), [float(resolution)]])
    p = probabilities(space, block_type, alphas, check_values)
    batch = p.shape[:-2]
    kw = {"dtype": p.dtype, "device": p.device}

    def column(v: object) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):  # a fill, not a copy from the host (no GPU wait)
            return torch.full((*batch, 1), float(v), **kw)
        return v.to(**kw).expand(batch).unsqueeze(-1)

    if not isinstance(channels, torch.Tensor) and not isinstance(resolution, torch.Tensor):
        space.check(block_type, channels, resolution)
    return torch.cat(
        [column(is_normal), column(channels), p.flatten(-2), column(resolution)], dim=-1
    )


def _check_torch(space: SearchSpace, alphas: torch.Tensor, values: bool = True) -> None:
    if tuple(alphas.shape[-2:]) != space.alpha_shape:
        raise InputError(
            f"alphas for space {space.name!r} must end in shape {space.alpha_shape} "
            f"(edges × ops), got {tuple(alphas.shape)}"
        )
    if values and not torch.isfinite(alphas.detach()).all():  # reads α back to the host
        raise InputError("alphas contain NaN or inf; expected finite logits")
