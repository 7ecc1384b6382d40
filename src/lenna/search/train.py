"""Training a derived network from scratch with a :class:`~lenna.search.recipe.TrainRecipe`,
and its accuracy on the held-out split.

The training images stay where the data is (the compute device) and are augmented there, so
a step never waits for a loader (crop, flip and cutout draw from the epoch's generator on the
CPU; drop-path draws on the device). Drop-path and the
auxiliary head are attached only while training: the network returned is the plain one, in
the default memory format.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch
from torch import nn

from lenna.errors import InputError
from lenna.search.augment import crop_flip, cutout
from lenna.search.auxiliary import Auxiliary
from lenna.search.config import amp_dtype
from lenna.search.datasets import ImageData
from lenna.search.drop_path import DropPath
from lenna.search.network import Network
from lenna.search.recipe import TrainRecipe
from lenna.search.replay import FIRST_EAGER, LATER_EAGER
from lenna.search.train_step import TrainStep
from lenna.signals import stop_if_signalled


def check_channels_last(net: nn.Module, device: torch.device) -> None:
    """Refuse, in one line, a channels-last network that torch's CPU kernels crash on.

    torch 2.13 (CPU) corrupts its heap in the backward pass of a channels-last 1×1 stride-2
    convolution with fewer than 4 output channels (a double free, seen on an AMD EPYC Zen 3
    at 1 thread; a DARTS reduction's factorised path at ``--channels`` under 4 has them).
    Channels-last is a GPU speed option, so such networks are refused rather than crashed."""
    if device.type != "cpu":
        return
    for m in net.modules():
        if (
            isinstance(m, nn.Conv2d)
            and m.kernel_size == (1, 1)
            and m.stride != (1, 1)
            and m.out_channels < 4
        ):
            raise InputError(
                "--channels-last on CPU is refused for this network: torch's CPU kernels "
                f"crash on its 1x1 stride-2 convolutions of {m.out_channels} output channels; "
                "use --channels 4 or more, or leave --channels-last off (a GPU speed option)"
            )


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or the default layout."""
    return torch.channels_last if channels_last else torch.contiguous_format


def train_batch(x: torch.Tensor, recipe: TrainRecipe, generator: torch.Generator) -> torch.Tensor:
    """A training batch as the recipe augments it: crop and flip, then cutout."""
    if recipe.augment:
        x = crop_flip(x, generator)
    if recipe.cutout:
        x = cutout(x, generator, recipe.cutout)
    return x.contiguous(memory_format=memory_format(recipe.channels_last))


@contextlib.contextmanager
def training_extras(
    net: Network, recipe: TrainRecipe
) -> Iterator[tuple[DropPath | None, Auxiliary | None]]:
    """Drop-path hooks and the auxiliary head for the length of the training, then removed
    (and the network back in the default memory format)."""
    device = next(net.parameters()).device
    if recipe.channels_last:  # before any hook is attached: a refusal leaves the net as given
        check_channels_last(net, device)
    drop = DropPath(net) if recipe.drop_path > 0 else None
    aux = Auxiliary(net).to(device) if recipe.aux_weight > 0 else None
    fmt = memory_format(recipe.channels_last)
    net.to(memory_format=fmt)
    if aux is not None:
        aux.to(memory_format=fmt)
    try:
        yield drop, aux
    finally:
        for extra in (drop, aux):
            if extra is not None:
                extra.remove()
        net.to(memory_format=torch.contiguous_format)


def optimiser(
    params: list[nn.Parameter], recipe: TrainRecipe
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """SGD with momentum and weight decay, its lr cosine-annealed over the epochs."""
    opt = torch.optim.SGD(
        params, recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, max(1, recipe.epochs), eta_min=recipe.lr_floor
    )
    return opt, sched


def graphs_apply(recipe: TrainRecipe, device: torch.device) -> bool:
    """Whether training replays its steps as CUDA graphs: asked for, and on a GPU."""
    return recipe.cuda_graph and device.type == "cuda"


def train_network(
    net: Network,
    data: ImageData,
    epochs: int | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
    recipe: TrainRecipe | None = None,
) -> dict:
    """Train from scratch on ``data``'s device, test on the held-out split; returns
    ``accuracy``, ``train_s``, the precision used and whether a CUDA graph was replayed.
    ``epochs`` (unless ``None``) overrides the recipe's."""
    recipe = recipe or TrainRecipe()
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters") and m is not net:
            m.reset_parameters()
    amp = amp_dtype(recipe.amp, data.x_train.device)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with training_extras(net, recipe) as (drop, aux):
        params = [*net.parameters(), *(aux.parameters() if aux is not None else [])]
        opt, sched = optimiser(params, recipe)
        graphs = graphs_apply(recipe, data.x_train.device)
        warmed: set[bool] = set()  # drop-path off (first epoch) or on: different graphs
        replayed = False
        for ep in range(recipe.epochs):
            if drop is not None:  # DARTS's train.py: drop_path_prob * epoch / epochs
                drop.prob = recipe.drop_path * ep / recipe.epochs
            kind = drop is not None and drop.prob > 0
            # a new step each epoch: a graph bakes in the learning rate and drop-path's p
            eager = LATER_EAGER if kind in warmed else FIRST_EAGER
            step = TrainStep(
                net, aux, opt, params, recipe.aux_weight, recipe.grad_clip, amp, graphs, eager
            )
            loss, acc = _epoch(net, aux, data, recipe, step, g)
            if step.captured:
                warmed.add(kind)
                replayed = True
            graphs = graphs and step.capture  # a failed capture is not tried again
            del step  # a graph's memory, before the next epoch's capture and the test pass
            sched.step()
            if on_epoch:
                on_epoch(ep + 1, loss, acc)
    return {
        "accuracy": test_accuracy(net, data),
        "train_s": time.perf_counter() - t0,
        "amp": "bf16" if amp == torch.bfloat16 else "off",  # what "auto" resolved to
        "cuda_graph": replayed,  # whether any epoch's steps replayed a CUDA graph
    }


def _epoch(
    net: Network,
    aux: Auxiliary | None,
    data: ImageData,
    recipe: TrainRecipe,
    step: TrainStep,
    g: torch.Generator,
) -> tuple[float, float]:
    """One pass over the training images (the last partial batch left out); mean loss and
    accuracy of the main classifier."""
    net.train()
    if aux is not None:
        aux.train()
    n, batch = len(data.y_train), recipe.batch
    order = torch.randperm(n, generator=g)
    total, correct, seen = 0.0, 0, 0
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        stop_if_signalled()  # a handler's raise lost in a callback stops the training here
        idx = order[i : i + batch]
        x, y = train_batch(data.x_train[idx], recipe, g), data.y_train[idx]
        if n < batch:  # a set smaller than a batch: one short step an epoch, never a graph
            step.capture = False
        main, right = step(x, y)
        total += main * len(idx)
        correct += right
        seen += len(idx)
    return total / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def test_accuracy(net: nn.Module, data: ImageData, batch: int = 256) -> float:
    """Top-1 accuracy on the held-out split, in eval mode and float32."""
    net.eval()
    correct = 0
    for i in range(0, len(data.y_test), batch):
        logits = net(data.x_test[i : i + batch])
        correct += int((logits.argmax(1) == data.y_test[i : i + batch]).sum())
    return correct / max(len(data.y_test), 1)
