"""The LENNA model: an MLP on the standardised features, target log(ms).

Trained with Adam on the training split, early-stopped on the validation split (the best
epoch's weights are kept). Log target: relative errors matter, and latencies span decades.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lenna.errors import InputError
from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.preprocess import Scaler, num_derived

DEFAULTS = {
    "hidden": [128, 64],
    "lr": 2e-3,
    "weight_decay": 1e-3,
    "epochs": 1500,
    "patience": 150,
    "batch_size": 64,
}


def build_mlp(n_in: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.SiLU()]
        n_in = h
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers).double()


@register_predictor
class MLPPredictor(Predictor):
    kind = "mlp"
    defaults = DEFAULTS
    differentiable = True

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        hp = self._hp()
        self.scaler = Scaler(self.space).fit(train.X)
        self.net = build_mlp(num_derived(self.space), hp["hidden"])
        self.info["training"] = train_log_target(
            self.net, self.scaler, None, train, val, hp, self.seed
        )

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        z = self.scaler(X.to(torch.float64))
        return torch.exp(self.net(z).squeeze(-1)).to(X.dtype)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        return {**tensors, **self.scaler.tensors()}, {"hidden": self._hp()["hidden"]}

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        self.net = build_mlp(num_derived(self.space), params["hidden"])
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
        self.scaler = Scaler.from_tensors(self.space, tensors)


def train_log_target(
    net: nn.Module,
    features: Any,
    offset: Any,
    train: LatencyData,
    val: LatencyData,
    hp: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Adam on MSE of log(ms) − offset(X), early stopping on validation; keeps the best weights.

    ``offset`` (log ms of a baseline, or None) lets the same loop train a correction model.
    A net with ``member_outputs`` (an ensemble: ``(M, n)`` log ms) and ``member_keys`` (its
    member-indexed tensors, every trainable one) is fitted one loss per member and each
    member is early-stopped on its own validation loss and kept at its own best epoch, as if
    trained alone; training ends when every member has stopped improving.
    """
    g = torch.Generator().manual_seed(seed)

    def target(d: LatencyData) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.as_tensor(d.X)
        y = torch.log(torch.as_tensor(d.y))
        with torch.no_grad():
            return features(X), y - offset(X) if offset is not None else y

    outputs = getattr(net, "member_outputs", None) or (lambda Z: net(Z).squeeze(-1)[None])
    sliced = set(net.member_keys()) if hasattr(net, "member_keys") else set()
    Ztr, ytr = target(train)
    Zva, yva = target(val) if len(val) else (Ztr, ytr)
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    best = bad = best_epoch = stopped = state = None
    for epoch in range(hp["epochs"]):
        net.train()
        for idx in torch.randperm(len(ytr), generator=g).split(hp["batch_size"]):
            opt.zero_grad()
            # a sum of the members' own losses: each gets its gradient as if alone (weight
            # decay included)
            loss = ((outputs(Ztr[idx]) - ytr[idx]) ** 2).mean(dim=-1).sum()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = ((outputs(Zva) - yva) ** 2).mean(dim=-1)  # (members,)
        if best is None:
            best = torch.full_like(v, float("inf"))
            bad, best_epoch = (
                torch.zeros_like(v, dtype=torch.long),
                torch.zeros_like(v, dtype=torch.long),
            )
            stopped = torch.zeros_like(v, dtype=torch.bool)
        better = (v < best - 1e-9) & ~stopped  # a stopped member is done, as if alone
        if better.any():
            state = _keep_best(net, state, better, sliced)
            best, best_epoch = torch.where(better, v, best), torch.where(better, epoch, best_epoch)
        bad = torch.where(better, 0, bad + 1)
        stopped |= ~better & (bad >= hp["patience"])
        if bool(stopped.all()):
            break
    if state is None or not bool(torch.isfinite(best).all()):
        raise InputError("training diverged (a validation loss is not finite); try a lower lr")
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        val_mse = float(((net(Zva).squeeze(-1) - yva) ** 2).mean())
    out = {"best_epoch": int(best_epoch.max()), "val_mse_log": val_mse, "epochs_run": epoch + 1}
    if len(best_epoch) > 1:
        out["member_best_epochs"] = best_epoch.tolist()
        out["member_val_mse_log"] = best.tolist()
    return out


def _keep_best(
    net: nn.Module, state: dict | None, better: torch.Tensor, sliced: set[str]
) -> dict[str, torch.Tensor]:
    """The best weights so far: an ensemble's member-indexed tensors (``sliced``) are kept
    member by member, each at its own best epoch; everything else whole."""
    current = net.state_dict()
    if state is None:
        return {k: t.clone() for k, t in current.items()}
    for k, t in current.items():
        if k in sliced:
            state[k][better] = t[better]
        else:
            state[k] = t.clone()
    return state
