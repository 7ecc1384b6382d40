"""CIFAR's standard augmentation — a random 32×32 crop of the image padded by 4, and a random
horizontal flip — and cutout, done on whatever device the batch is on.

Why on the device: with the training set held in device memory, a step never waits for a
data loader; the augmentation is a few tensor ops on the batch. The randomness comes from the
epoch's generator, so a resumed search draws the same crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` cropped at a random offset of its zero-padded
    version and flipped left–right with probability 1/2."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx = torch.arange(n, device=x.device)[:, None, None]
    # (N, H, W, C) gathered, back to (N, C, H, W)
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, generator: torch.Generator, length: int) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` with a ``length``-pixel square set to zero (the
    train mean: the images are standardised), centred on a random pixel and clipped at the
    borders (DeVries & Taylor 2017, as DARTS's ``utils.Cutout``; for an odd ``length`` the
    square here is ``length`` wide, not ``length - 1``)."""
    n, _, h, w = x.shape
    dev = x.device  # the draws stay on the generator's device; only 2N offsets move
    top = (torch.randint(0, h, (n,), generator=generator) - length // 2).to(dev)
    left = (torch.randint(0, w, (n,), generator=generator) - length // 2).to(dev)
    rows = torch.arange(h, device=dev)[None, :] - top[:, None]  # (N, H): offset into the square
    cols = torch.arange(w, device=dev)[None, :] - left[:, None]
    in_rows, in_cols = (rows >= 0) & (rows < length), (cols >= 0) & (cols < length)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (N, H, W)
    return x * keep.to(x.dtype)[:, None]
