"""`linear-probe`: L2-regularised logistic regression on frozen embeddings (CLIP's linear probe).

scikit-learn's LogisticRegression (lbfgs) on the unit-norm embeddings, no intercept, so the head
is a plain (C, D) matrix like every other classifier here. The inverse regularisation C is picked
from a grid by stratified cross-validation when there are ≥ 2 shots per class, else the default.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

from anybind.adapt.base import (
    METHODS,
    Adaptation,
    AdaptContext,
    AdaptMethod,
    MethodOptions,
    require_labels,
)
from anybind.adapt.features import embed_data
from anybind.data.dataset import MultiModalDataset


class LinearProbeOptions(MethodOptions):
    #: augmented views of each shot added as extra training samples (the modality's augment)
    views: int = 0
    C: float = 10.0
    #: candidate C values for cross-validation (used when every class has ≥ 2 samples)
    C_grid: list[float] = [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
    max_iter: int = 2000


@METHODS.register("linear-probe")
class LinearProbe(AdaptMethod):
    Options = LinearProbeOptions
    options: LinearProbeOptions
    over_embeddings = True

    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation:
        x, source = embed_data(
            ctx.space, data, ctx.modality, views=self.options.views, seed=ctx.seed
        )
        labels = require_labels(data, self.name)[source].numpy()
        x_np = x.numpy().astype(np.float64)
        c = self.options.C
        per_class = np.bincount(labels[: len(data)]).min() if len(data) else 0
        if per_class >= 2 and self.options.C_grid:
            # views of one sample stay in one fold (GroupKFold-style), so CV is not fooled by them
            folds = StratifiedGroupKFold(
                n_splits=min(int(per_class), 4), shuffle=True, random_state=0
            )
            scores = [
                cross_val_score(
                    self._model(v), x_np, labels, groups=source.numpy(), cv=folds
                ).mean()
                for v in self.options.C_grid
            ]
            c = self.options.C_grid[int(np.argmax(scores))]
        model = self._model(c).fit(x_np, labels)
        head = torch.zeros(len(ctx.class_names), x.shape[1])
        head[torch.as_tensor(model.classes_)] = torch.as_tensor(model.coef_, dtype=torch.float32)
        if len(model.classes_) == 2:  # binary: sklearn keeps one row, w and −w
            w = torch.as_tensor(model.coef_[0], dtype=torch.float32) / 2
            head[torch.as_tensor(model.classes_)] = torch.stack([-w, w])
        return self.new_adaptation(
            ctx,
            head=head,
            info={"C": c, "train_samples": int(len(labels)), "classes": model.classes_.tolist()},
        )

    def _model(self, c: float) -> LogisticRegression:
        return LogisticRegression(C=c, fit_intercept=False, max_iter=self.options.max_iter)
