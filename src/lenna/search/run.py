"""A search run in a folder: config, per-epoch metrics and α, checkpoints, genotype, figures.

Every epoch draws its data order and gate samples from a generator seeded by (seed, epoch), and
the checkpoint holds weights, α, both optimisers and the scheduler. So a run stopped after
epoch k and resumed is step for step the run that was never stopped.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lenna.errors import InputError
from lenna.folder_lock import held_folder
from lenna.jsonsafe import write_json
from lenna.measure.fingerprint import config_fingerprint
from lenna.memory import check_fits
from lenna.predict.io import load_predictor
from lenna.search.augment import crop_flip
from lenna.search.bilevel import StepStats, search_step
from lenna.search.budget import Multiplier, check_budget, derived_cells, fit_to_budget, network_ms
from lenna.search.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from lenna.search.config import SearchConfig, amp_dtype
from lenna.search.datasets import ImageData, load_data, split_halves
from lenna.search.device import compute_device
from lenna.search.fixed_part import measure_fixed_part
from lenna.search.folder import (
    ALPHAS,
    FIXED_PART,
    GENOTYPE,
    METRICS,
    check_folder,
    truncate,
    write_config,
    write_metrics,
)
from lenna.search.genotype import Genotype
from lenna.search.graphed import (
    FIRST_EAGER,
    LATER_EAGER,
    GraphedStep,
    graph_applies,
    set_capturable,
)
from lenna.search.latency import LatencyTerm
from lenna.search.network import NetConfig, Network, network_bytes
from lenna.search.network_gap import gap_applies, measure_network_gap
from lenna.search.preprocessing import preprocessing_offsets
from lenna.search.timing import calibration_from, measure_config_from, measured_as
from lenna.search.train import check_channels_last
from lenna.signals import stop_if_signalled
from lenna.space import get_space


@dataclass
class SearchResult:
    folder: Path
    genotype: Genotype
    metrics: list[dict]


def entropy(alphas: torch.Tensor, mask: np.ndarray) -> float:
    """Mean per-edge entropy (nats) of softmax(α) over the edge's real ops."""
    a = alphas.detach().cpu().double().masked_fill(~torch.as_tensor(mask), float("-inf"))
    p = torch.softmax(a, dim=-1)
    return float(-(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean())


def fit_net(net: NetConfig, data: ImageData) -> NetConfig:
    """The network config with the data set's input channels, classes and resolution."""
    return NetConfig(
        **{
            **net.to_dict(),
            "in_channels": data.in_channels,
            "num_classes": data.num_classes,
            "resolution": data.resolution,
        }
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63)


class Search:
    """Builds network, optimisers and latency term from a :class:`SearchConfig`."""

    def __init__(self, cfg: SearchConfig, data: ImageData | None = None) -> None:
        self.space = get_space(cfg.space)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = compute_device(cfg.device)
        self.amp = amp_dtype(cfg.amp, self.device)
        d = data or load_data(cfg.data, seed=cfg.seed, limit=cfg.limit)
        self.data = d = d.to(self.device)  # held on the device: a step never waits for a copy
        # a copy fitted to the data: the caller's config is left as it was given
        self.cfg = cfg = replace(cfg, net=fit_net(cfg.net, d))
        torch.manual_seed(cfg.seed)
        self.net = Network(self.space, cfg.net, cfg.mode).to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.channels_last:
            check_channels_last(self.net, self.device)
        self.net.to(memory_format=self.memory_format)  # 4-d weights only: α stay as they are
        self.term = None
        if cfg.predictor:
            self.term = LatencyTerm(
                load_predictor(cfg.predictor, space=cfg.space),
                self.space,
                self.net.specs,
                cfg.lam,
                cfg.form,
                cfg.ref_ms,
                cfg.target_ms,
                cfg.allow_extrapolation,
                cfg.budget_ms,
                cfg.fixed_ms or 0.0,
                self.device,
            )
        self.multiplier = (
            Multiplier(cfg.budget_ms, cfg.budget_lr) if cfg.budget_ms is not None else None
        )
        self.w_opt = torch.optim.SGD(
            self.net.weights(), cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_wd
        )
        # each epoch's step replayed as a CUDA graph where one can hold it (search.graphed)
        self.graphs = cfg.cuda_graph and graph_applies(self.device, cfg.mode, cfg.unrolled)
        self._warmed: set[bool] = set()  # kinds of step (α step or not) captured in this process
        self._derived: dict[tuple, float] = {}  # derived cells -> their predicted network (ms)
        self.a_opt = torch.optim.Adam(
            list(self.net.alphas.values()),
            cfg.a_lr,
            betas=(0.5, 0.999),
            weight_decay=cfg.a_wd,
            capturable=self.graphs,
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, cfg.epochs, eta_min=cfg.w_lr_min
        )
        self.w_idx, self.a_idx = split_halves(len(d.y_train), cfg.seed)
        self.epoch = 0

    # ---- state -----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items() if not _shared(k)}
        meta = {"epoch": self.epoch, "sched": self.sched.state_dict()}
        if self.multiplier is not None:
            meta["multiplier"] = self.multiplier.value
        for name, opt in (("w_opt", self.w_opt), ("a_opt", self.a_opt)):
            t, rest = flatten_state(name, opt.state_dict())
            tensors.update(t)
            meta[name] = rest
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        try:
            res = self.net.load_state_dict(
                {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, strict=False
            )
            missing = [k for k in res.missing_keys if not _shared(k)]
            if missing or res.unexpected_keys:
                raise KeyError(f"missing {missing[:3]}, unexpected {res.unexpected_keys[:3]}")
            for name, opt in (("w_opt", self.w_opt), ("a_opt", self.a_opt)):
                opt.load_state_dict(unflatten_state(name, tensors, meta[name]))
            set_capturable(self.a_opt, self.graphs)  # the checkpoint's flag may be the other
            self.sched.load_state_dict(meta["sched"])
            epoch = int(meta["epoch"])
            if not 1 <= epoch <= self.cfg.epochs:  # a checkpoint is written after an epoch
                raise ValueError(f"epoch {meta['epoch']!r} is not in 1..{self.cfg.epochs}")
            self.epoch = epoch
            if self.multiplier is not None:
                self.multiplier.value = float(meta["multiplier"])
                self.term.multiplier = self.multiplier.value
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise InputError(
                f"checkpoint does not fit this search ({e.__class__.__name__}: {e})"
            ) from None

    # ---- training --------------------------------------------------------------------
    def batches(self, epoch: int) -> tuple[list, list, torch.Generator]:
        g = torch.Generator().manual_seed(_epoch_seed(self.cfg.seed, epoch))
        b = self.cfg.batch
        w = self.w_idx[torch.randperm(len(self.w_idx), generator=g)]
        a = self.a_idx[torch.randperm(len(self.a_idx), generator=g)]
        n = min(len(w), len(a))
        steps = max(1, n // b)
        return (
            [w[i * b : (i + 1) * b] for i in range(steps)],
            [a[i * b : (i + 1) * b] for i in range(steps)],
            g,
        )

    def stepper(
        self, arch: bool, generator: torch.Generator
    ) -> Callable[[tuple, tuple], StepStats]:
        """This epoch's step, ``step(batch_w, batch_a)``: a CUDA graph's replay or eager."""
        cfg = self.cfg
        if self.graphs:
            eager = LATER_EAGER if arch in self._warmed else FIRST_EAGER
            return GraphedStep(
                self.net,
                self.term,
                self.w_opt,
                self.a_opt,
                cfg.grad_clip,
                arch,
                self.amp,
                eager_steps=eager,
            )

        def step(batch_w: tuple, batch_a: tuple) -> StepStats:
            return search_step(
                self.net,
                self.term,
                self.w_opt,
                self.a_opt,
                batch_w,
                batch_a,
                cfg.grad_clip,
                cfg.unrolled,
                generator,
                arch=arch,
                amp=self.amp,
            )

        return step

    def _after_epoch(self, step: Callable) -> None:
        """Remember what a graphed epoch learnt: a kind of step captured (later captures of it
        warm up less), or a capture that failed (the rest of the search runs eagerly)."""
        if not isinstance(step, GraphedStep):
            return
        if step.captured:
            self._warmed.add(step.arch)
        if not step.capture:
            self.graphs = False
            set_capturable(self.a_opt, False)  # eager Adam runs faster uncapturable

    def run_epoch(self, on_step: Callable[[StepStats, int, int], None] | None = None) -> dict:
        cfg, d = self.cfg, self.data
        epoch = self.epoch
        torch.manual_seed(_epoch_seed(cfg.seed, epoch))
        w_batches, a_batches, g = self.batches(epoch)
        step = self.stepper(epoch >= cfg.warmup, g)
        self.net.train()
        lr = self.w_opt.param_groups[0]["lr"]
        tot: dict[str, float] = dict.fromkeys(
            ("w_loss", "a_loss", "total", "wc", "ac", "n", "lat_s", "step_s", "e"), 0.0
        )
        for i, (wi, ai) in enumerate(zip(w_batches, a_batches, strict=True)):
            stop_if_signalled()  # a handler's raise lost in a callback stops the run here
            xw, xa = d.x_train[wi], d.x_train[ai]
            if cfg.augment:
                xw, xa = crop_flip(xw, g), crop_flip(xa, g)
            xw = xw.contiguous(memory_format=self.memory_format)
            xa = xa.contiguous(memory_format=self.memory_format)
            st = step((xw, d.y_train[wi]), (xa, d.y_train[ai]))
            n = len(wi)
            tot["w_loss"] += st.w_loss * n
            tot["a_loss"] += st.a_loss * n
            tot["total"] += st.total_loss * n
            tot["wc"] += st.w_correct
            tot["ac"] += st.a_correct
            tot["n"] += n
            tot["lat_s"] += st.latency_s
            tot["step_s"] += st.step_s
            st.epoch = epoch + 1
            if self.multiplier is not None and epoch >= cfg.warmup:
                self._check_finite(epoch)  # derive() below would refuse NaN α less clearly
                self.term.multiplier = self.multiplier.update(self.derived_ms())
            if on_step:
                on_step(st, i + 1, len(w_batches))
        self._after_epoch(step)
        self._check_finite(epoch)  # once an epoch: a check at every pass would stall a GPU
        self.sched.step()
        self.epoch += 1
        n = tot["n"]
        mask = self.space.op_mask
        row = {
            "epoch": self.epoch,
            "lr": lr,
            "w_loss": tot["w_loss"] / n,
            "w_acc": tot["wc"] / n,
            "a_loss": tot["a_loss"] / n,
            "a_acc": tot["ac"] / n,
            "total_loss": tot["total"] / n,
            "predicted_ms": self.predicted_ms(),
            "entropy_normal": entropy(self.net.alphas["normal"], mask("normal"))
            if "normal" in self.net.alphas
            else math.nan,
            "entropy_reduction": entropy(self.net.alphas["reduction"], mask("reduction"))
            if "reduction" in self.net.alphas
            else math.nan,
            "latency_share": tot["lat_s"] / tot["step_s"] if tot["step_s"] else math.nan,
            "epoch_s": tot["step_s"],
            "expected_network_ms": self.predicted_ms() + self.term.outside_ms
            if self.term is not None
            else math.nan,
            "derived_ms": self.derived_ms(),
            "multiplier": self.multiplier.value if self.multiplier is not None else math.nan,
        }
        return row

    def _check_finite(self, epoch: int) -> None:
        """One line, not a traceback, when α have become NaN or inf."""
        if all(bool(torch.isfinite(a).all()) for a in self.net.alphas.values()):
            return
        knob = "--budget-lr" if self.multiplier is not None else "λ"
        raise InputError(
            f"α became NaN or inf in epoch {epoch + 1}: the search diverged (lower --arch-lr "
            f"or {knob}); the epochs before it are saved"
        )

    def predicted_ms(self) -> float:
        if self.term is None:
            return math.nan
        with torch.no_grad():
            return float(self.term.expected_ms(dict(self.net.alphas.items())))

    def derived_ms(self) -> float:
        """Predicted whole-network latency (ms) of the network derived from the current α."""
        if self.term is None:
            return math.nan
        cells = derived_cells(self.term, dict(self.net.alphas.items()))
        term = self.term
        key = (
            tuple((bt, tuple(c)) for bt, c in sorted(cells.items())),
            term.outside_ms,  # set after construction (measured, or from the run folder)
            tuple(term.cell_offsets_ms),
        )
        if key not in self._derived:  # a budget asks every step; the cells rarely change
            self._derived[key] = network_ms(self.term, cells)
        return self._derived[key]

    def genotype(self) -> Genotype:
        alphas = dict(self.net.alphas.items())
        g = Genotype.from_alphas(self.space, alphas, self.cfg.net, self.cfg.lam)
        budget = self.cfg.budget_ms
        if self.term is not None and budget is not None:
            before = self.derived_ms()
            g.cells, _, changes = fit_to_budget(self.term, alphas, budget)
            g.budget_ms = budget
            fit = {
                "multiplier": self.multiplier.value if self.multiplier else 0.0,
                "derived_ms": before,
                "changes_to_fit": changes,
            }
        if self.term is not None:
            onehot = g.onehot_alphas()
            g.predicted_cells_ms = self.term.per_cell_ms(onehot)
            g.predicted_ms = float(sum(g.predicted_cells_ms))
            g.predicted_fixed_ms = self.term.fixed_ms
            g.predicted_gap_ms = self.term.gap_ms
        g.info = {
            "predictor": self.cfg.predictor,
            "form": self.cfg.form,
            "epochs": self.epoch,
            "seed": self.cfg.seed,
            "data": self.cfg.data,
            "cells": [vars(s) for s in self.net.specs],
        }
        if budget is not None and self.term is not None:
            g.info["budget"] = fit
        if self.term is not None:  # how the predictor's labels were measured: verify alike
            g.info["measured_as"] = measured_as(self.term.predictor)
            if any(self.term.cell_offsets_ms):  # already in predicted_cells_ms
                g.info["cell_offsets_ms"] = self.term.cell_offsets_ms
        return g


def _fixed_part(
    out: Path, search: Search, resume: bool, on_note: Callable[[str], None] | None
) -> dict | None:
    """The network's fixed part (ms), each cell's preprocessing offset and the gap between the
    whole network and its parts timed alone: given in the config (the offsets and the gap then
    stay 0), kept in the run folder (a resumed search uses the numbers it started with; a
    folder from before the offsets or the gap existed has none), or measured now as the
    predictor's labels were."""
    term, cfg = search.term, search.cfg
    if term is None:
        return None
    if cfg.fixed_ms is not None:
        term.fixed_ms = float(cfg.fixed_ms)
        if search.space.preprocess:
            warnings.warn(
                "with --fixed-ms nothing is measured before the search, so each cell's wider "
                "input preprocessing in the network is not added to its prediction",
                stacklevel=3,
            )
        return None
    path = out / FIXED_PART
    if resume and path.is_file():
        try:
            stored = json.loads(path.read_text())
            term.fixed_ms = float(stored["fixed_ms"])
            if stored.get("cell_offsets_ms") is not None:
                term.set_offsets(stored["cell_offsets_ms"])
            term.gap_ms = float(stored.get("gap_ms") or 0.0)  # a folder from before: none
            if not math.isfinite(term.gap_ms):
                raise ValueError("gap_ms is not finite")
        except InputError as e:  # an InputError is a ValueError: before the tuple
            raise InputError(f"{path} is malformed: {e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path} is malformed ({e.__class__.__name__})") from None
        return None
    if on_note:
        on_note("measuring the network outside its cells (stem, norms, classifier)")
    rec = measured_as(term.predictor)
    mcfg = measure_config_from(rec)
    z0 = rec.get("reference_ms") if mcfg.normalise else None
    term.fixed_ms = measure_fixed_part(search.space, cfg.net, mcfg, z0)
    if search.space.preprocess and on_note:
        on_note("measuring each cell's input preprocessing as the network runs it")
    term.set_offsets(preprocessing_offsets(search.space, cfg.net, mcfg, z0))
    gap = None
    if gap_applies(mcfg):
        if on_note:
            on_note("measuring the whole network against its parts timed alone")
        gap = measure_network_gap(
            search.space, cfg.net, term.fixed_ms, mcfg, calibration_from(rec, mcfg)
        )
        term.gap_ms = gap["gap_ms"]
    return {
        "fixed_ms": term.fixed_ms,
        "cell_offsets_ms": term.cell_offsets_ms,
        "gap_ms": term.gap_ms,  # 0 where not measured (eager PyTorch)
        "gap_measured_on": gap
        and {k: gap[k] for k in ("gaps_ms", "network_ms", "cells_ms", "cells")},
        "measured_as": rec,
        "fingerprint": config_fingerprint(mcfg),
    }


def _shared(key: str) -> bool:
    """A cell's view of its type's shared α (the tensor is stored once, as ``alphas.<type>``)."""
    return key.startswith("cells.") and key.endswith(".alphas")


def run_search(
    cfg: SearchConfig,
    out: str | Path,
    resume: bool = False,
    data: ImageData | None = None,
    on_step: Callable[[StepStats, int, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    figures: bool = True,
    on_note: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run (or resume) a search into ``out``; returns the derived genotype and metrics."""
    out = Path(out)
    data = data or load_data(cfg.data, seed=cfg.seed, limit=cfg.limit)
    cfg = replace(cfg, net=fit_net(cfg.net, data))  # the caller's config stays as given
    space = get_space(cfg.space)
    need = network_bytes(space, cfg.net, cfg.mode, cfg.batch)
    where = str(compute_device(cfg.device))  # one line if this machine lacks the device
    check_fits(
        f"the search network ({cfg.net.cells} cells of {cfg.net.channels} channels)", need, where
    )
    with held_folder(out, "search"):  # one writer: a second run into out stops here
        cfg = check_folder(out, cfg, resume)
        search = Search(cfg, data)  # refuses a bad predictor before anything is written
        fixed = _fixed_part(out, search, resume, on_note)
        if search.term is not None and cfg.budget_ms is not None:
            note = check_budget(search.term, cfg.budget_ms)  # refuses an impossible one
            if note:
                warnings.warn(note, stacklevel=2)
        if not resume:
            write_config(out, cfg)
        if fixed is not None and not (out / FIXED_PART).is_file():
            write_json(out / FIXED_PART, fixed)
        metrics: list[dict] = []
        if resume:
            if (out / "checkpoint.json").is_file():
                search.load_state(*load_checkpoint(out))
            metrics = truncate(out, search.epoch)  # rows of an epoch without checkpoint: redone
        while search.epoch < cfg.epochs:
            row = search.run_epoch(on_step)
            metrics.append(row)
            write_metrics(out / METRICS, metrics)
            with (out / ALPHAS).open("a") as f:
                alphas = {k: v.detach().cpu().tolist() for k, v in search.net.alphas.items()}
                f.write(json.dumps({"epoch": search.epoch, **alphas}) + "\n")
            save_checkpoint(out, *search.state())
            if on_epoch:
                on_epoch(row)
        genotype = search.genotype()
        genotype.save(out / GENOTYPE)
        if figures:
            from lenna.report.search_figures import draw_genotype, search_curves

            draw_genotype(genotype, out / "cells.png")
            search_curves(metrics, out / "search_curves.png", cfg.budget_ms)
        return SearchResult(out, genotype, metrics)
