"""`cross-modal-probe`: class-name text embeddings as extra training samples for a linear head
("Multimodality Helps Unimodality", Lin et al., CVPR 2023).

The head W (C, D) starts as the zero-shot classifier (normalised prompt-ensemble text embeddings)
and is trained with cross-entropy on s·⟨x̂, W_c⟩ over the union of the K-shot target embeddings and
one text embedding per (class, template): each half of the loss weighted by `text_weight`. Full-
batch AdamW (the few-shot set is tiny). `wise_ft` > 0 interpolates the result with the zero-shot
head (WiSE-FT). Written by hand: a 20-line torch loop, no library ships this head.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from anybind.adapt.base import (
    METHODS,
    Adaptation,
    AdaptContext,
    AdaptMethod,
    MethodOptions,
    require_labels,
)
from anybind.adapt.features import embed_data
from anybind.adapt.trainer import fit
from anybind.data.dataset import MultiModalDataset


class CrossModalProbeOptions(MethodOptions):
    #: augmented views of each shot added as extra training samples (the modality's augment)
    views: int = 0
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-2
    #: weight of the text samples' loss (the paper's cross-modal batch ratio)
    text_weight: float = 0.5
    #: logit scale s; None uses the space's learned scale
    scale: float | None = None
    init: Literal["zeroshot", "random"] = "zeroshot"
    wise_ft: float = 0.0


@METHODS.register("cross-modal-probe")
class CrossModalProbe(AdaptMethod):
    Options = CrossModalProbeOptions
    options: CrossModalProbeOptions
    over_embeddings = True

    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation:
        o = self.options
        x, source = embed_data(ctx.space, data, ctx.modality, views=o.views, seed=ctx.seed)
        labels = require_labels(data, self.name)[source]
        names, temps = ctx.class_names, ctx.templates
        with torch.no_grad():
            prompts = [t.format(c) for c in names for t in temps]
            text = F.normalize(ctx.space.embed(ctx.text, prompts).float().cpu(), dim=-1)
            zero_shot = ctx.class_embeddings().cpu()
        text_labels = torch.arange(len(names)).repeat_interleave(len(temps))
        scale = o.scale or float(ctx.space.logit_scale().detach())
        g = torch.Generator().manual_seed(ctx.seed)
        init = (
            zero_shot.clone()
            if o.init == "zeroshot"
            else F.normalize(torch.randn(zero_shot.shape, generator=g), dim=-1)
        )
        head = torch.nn.Parameter(init)
        opt = torch.optim.AdamW([head], lr=o.lr, weight_decay=o.weight_decay)

        def loss_of(_: int) -> torch.Tensor:  # full batch: the few-shot set is tiny
            loss_x = F.cross_entropy(scale * x @ head.T, labels)
            loss_t = F.cross_entropy(scale * text @ head.T, text_labels)
            return (1 - o.text_weight) * loss_x + o.text_weight * loss_t

        losses = fit(opt, range(o.steps), loss_of)
        w = head.detach()
        if o.wise_ft > 0:
            w = (1 - o.wise_ft) * w + o.wise_ft * zero_shot * w.norm(dim=1, keepdim=True)
        return self.new_adaptation(
            ctx,
            head=w,
            info={
                "train_samples": int(len(labels)),
                "text_samples": int(len(text_labels)),
                "scale": scale,
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
            },
        )
