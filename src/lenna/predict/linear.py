"""ElasticNet on the standardised features, target log(ms): the seed's "pre-practice" model.

Fitted with scikit-learn; the coefficients are then held as tensors, so the model is also
differentiable in α and needs no pickle to be stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import ElasticNetCV

from lenna.predict.base import Predictor, register_predictor
from lenna.predict.data import LatencyData
from lenna.predict.preprocess import Scaler


@register_predictor
class ElasticNetPredictor(Predictor):
    kind = "elasticnet"
    differentiable = True

    def _fit(self, train: LatencyData, val: LatencyData) -> None:
        self.scaler = Scaler(self.space).fit(train.X)
        Z = self.scaler(torch.as_tensor(train.X)).numpy()
        n_folds = max(2, min(5, len(train) // 2))
        model = ElasticNetCV(
            l1_ratio=[0.1, 0.5, 0.9, 1.0], cv=n_folds, random_state=self.seed, max_iter=20000
        )
        model.fit(Z, np.log(train.y))
        self.coef = torch.as_tensor(model.coef_, dtype=torch.float64)
        self.intercept = torch.tensor([float(model.intercept_)], dtype=torch.float64)
        self.info["hyperparameters"] = {
            "alpha": float(model.alpha_),
            "l1_ratio": float(model.l1_ratio_),
        }

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        z = self.scaler(X)
        return torch.exp(z @ self.coef.to(z) + self.intercept.to(z))

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"coef": self.coef, "intercept": self.intercept, **self.scaler.tensors()}, {}

    def load_state(
        self, tensors: dict[str, torch.Tensor], params: dict[str, Any], folder: Any
    ) -> None:
        self.coef, self.intercept = tensors["coef"], tensors["intercept"]
        self.scaler = Scaler.from_tensors(self.space, tensors)
