"""`lora`, `ia3`, `adapter`, `prompt`: few-shot supervised tuning of one tower through a tuner.

A tuner (see `anybind.tuners`) is attached to one tower — by default the target modality's tower;
for `prompt` the text tower (CoOp) unless `tower` names a transformer tower (VPT) — and only its
tensors are trained, with cross-entropy on s·⟨f(x), t_c⟩ where t_c are the class text embeddings
(recomputed every step when the text tower is the one being tuned, so gradients reach the
context). The target inputs are augmented by their modality's `augment` (optional). AdamW with a
cosine schedule; the last step is kept. Prompt tuning of the text tower uses the template "{}"
(the learned context replaces the hand-written templates), as CoOp does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from anybind.adapt.base import (
    METHODS,
    Adaptation,
    AdaptContext,
    AdaptMethod,
    MethodOptions,
    require_labels,
)
from anybind.adapt.trainer import cosine_over, fit
from anybind.adapt.views import modality_tensor
from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError
from anybind.progress import progress_bar
from anybind.tuners import build_tuner


class TowerTuningOptions(MethodOptions):
    #: which tower gets the tuner; None = the target modality's (text for `prompt`)
    tower: str | None = None
    steps: int = 150
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    augment: bool = True
    #: logit scale (1 / temperature) of the cross-entropy
    scale: float = 20.0
    #: options passed to the tuner (e.g. {"r": 8} for lora), checked by the tuner's own schema
    tuner: dict[str, Any] = Field(default_factory=dict)


class TowerTuning(AdaptMethod):
    tuner_name: ClassVar[str]
    Options = TowerTuningOptions
    options: TowerTuningOptions

    def default_tower(self, ctx: AdaptContext) -> str:
        return ctx.modality

    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation:
        o = self.options
        labels = require_labels(data, self.name).to(ctx.device)
        tower_name = o.tower or self.default_tower(ctx)
        if tower_name not in ctx.space.towers:
            raise AnybindError(
                f"{self.name}: no tower '{tower_name}' (towers: {', '.join(ctx.space.towers)})"
            )
        tuner = build_tuner(self.tuner_name, o.tuner)
        tuner.attach(ctx.space.towers[tower_name])
        text_tuned = tower_name == ctx.text
        templates = ["{}"] if text_tuned and self.tuner_name == "prompt" else ctx.templates
        tower = ctx.space.towers[ctx.modality]
        modality = tower.modality
        inputs = modality_tensor(data, ctx.modality)
        with torch.no_grad():
            fixed_classes = ctx.class_embeddings(templates=templates)
        opt = torch.optim.AdamW(tuner.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        g = torch.Generator().manual_seed(ctx.seed)
        torch.manual_seed(ctx.seed)
        # eval mode throughout: BatchNorm running statistics are base weights and must not move
        ctx.space.eval()

        def loss_of(step: int) -> torch.Tensor:
            idx = torch.randperm(len(inputs), generator=g)[: o.batch_size]
            x = inputs[idx]
            if o.augment:
                x = modality.augment(x)
            classes = ctx.class_embeddings(templates=templates) if text_tuned else fixed_classes
            emb = tower(x.to(ctx.device))
            return F.cross_entropy(o.scale * emb @ classes.T, labels[idx.to(labels.device)])

        with progress_bar("steps", disable=not ctx.progress) as bar:
            task = bar.add_task(f"{self.name} on {tower_name}", total=o.steps)
            losses = fit(
                opt,
                range(o.steps),
                loss_of,
                schedule=cosine_over(o.steps),
                after_step=lambda _: bar.advance(task),
            )
        ctx.space.eval()
        return self.new_adaptation(
            ctx,
            templates=templates,
            tuners={tower_name: tuner},
            info={
                "tower": tower_name,
                "train_samples": int(len(labels)),
                "trainable_parameters": sum(p.numel() for p in tuner.parameters()),
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
            },
        )


@METHODS.register("lora")
class LoRA(TowerTuning):
    tuner_name = "lora"


@METHODS.register("ia3")
class IA3(TowerTuning):
    tuner_name = "ia3"


@METHODS.register("adapter")
class BottleneckAdapter(TowerTuning):
    tuner_name = "adapter"


@METHODS.register("prompt")
class Prompt(TowerTuning):
    """CoOp on the text tower by default; VPT when `tower` names a transformer tower."""

    tuner_name = "prompt"

    def default_tower(self, ctx: AdaptContext) -> str:
        return ctx.text
