"""`self-train`: source-free adaptation without target labels, after ReCLIP (Hu et al., WACV 2024)
with SHOT's information-maximisation term (Liang et al., ICML 2020).

Each round, over the unlabelled adaptation data:
1. Embed everything with the current tower; view A = label propagation over the target's own
   neighbourhood graph, seeded by the class text embeddings, after removing their shared direction
   (`label_propagation`); view B = nearest prediction-weighted class centroid in the tower's own
   space (SHOT's clustering; the text classifier's soft predictions weight the first centroids).
2. One epoch of training on: cross-entropy to view A's label where both views agree (the samples
   the two views vouch for), plus information maximisation (mean prediction entropy minus the
   entropy of the mean prediction, which keeps classes from collapsing into one).
Predictions are s·⟨f(x), t_c⟩ against the fixed class text embeddings t_c, so the adapted tower
stays in the shared space. `params` picks what is trained: the whole tower, its normalisation
layers only (ReCLIP-V, TENT), or a LoRA tuner. The last round's model is kept: there is no
label-based model selection (ReCLIP's published logs pick the best epoch by test accuracy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
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
from anybind.adapt.features import embed_inputs
from anybind.adapt.label_propagation import propagate_labels
from anybind.adapt.norm_layers import freeze_except, norm_parameters, norm_state
from anybind.adapt.trainer import fit, set_lr_factor, shuffled_batches
from anybind.adapt.views import modality_tensor
from anybind.data.dataset import MultiModalDataset
from anybind.progress import progress_bar
from anybind.schedules import cosine
from anybind.space import Tower
from anybind.tuners import build_tuner
from anybind.tuners.base import Tuner


class SelfTrainOptions(MethodOptions):
    rounds: int = 20
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 64
    params: Literal["all", "norm", "lora"] = "all"
    #: weight of the pseudo-label cross-entropy next to information maximisation
    pseudo_weight: float = 0.3
    diversity_weight: float = 1.0
    knn: int = 20
    alpha: float = 0.99
    #: logit scale for predictions (1 / temperature)
    scale: float = 20.0
    augment: bool = False
    lora_rank: int = 8
    #: the classifier kept afterwards: the class text embeddings, or the class centroids of the
    #: adapted target embeddings under the final pseudo-labels (ReCLIP-V's classifier)
    head: Literal["text", "centroids"] = "text"


def centroid_labels(emb: torch.Tensor, probs: torch.Tensor, iters: int = 2) -> torch.Tensor:
    """SHOT's self-supervised labels: prediction-weighted centroids, then hard k-means steps."""
    centroids = F.normalize(probs.T @ emb, dim=1)
    labels = (emb @ centroids.T).argmax(1)
    for _ in range(iters):
        one_hot = F.one_hot(labels, probs.shape[1]).float()
        centroids = F.normalize(one_hot.T @ emb + 1e-8, dim=1)
        labels = (emb @ centroids.T).argmax(1)
    return labels


def information_maximisation(logits: torch.Tensor, diversity_weight: float) -> torch.Tensor:
    p = logits.softmax(dim=1)
    entropy = -(p * torch.log(p + 1e-6)).sum(1).mean()
    mean = p.mean(0)
    return entropy + diversity_weight * (mean * torch.log(mean + 1e-6)).sum()


@dataclass
class _Task:
    """What one self-training run works on: the tower, its inputs, the classes, the shots."""

    tower: Tower
    inputs: torch.Tensor
    classes: torch.Tensor  # (C, D) fixed class text embeddings, on the tower's device
    shots: tuple[torch.Tensor, torch.Tensor] | None  # labelled inputs and labels, if any
    device: torch.device

    def propagated(self, o: SelfTrainOptions, emb: torch.Tensor) -> torch.Tensor:
        """View A: labels propagated over the target's neighbourhood graph, seeded by the class
        text embeddings (and the shots' labels when there are shots)."""
        seeds = None
        if self.shots is not None:
            seeds = (embed_inputs(self.tower, self.shots[0]), self.shots[1])
        classes = self.classes.cpu()
        return propagate_labels(emb, classes, k=o.knn, alpha=o.alpha, labelled=seeds).argmax(1)


@METHODS.register("self-train")
class SelfTrain(AdaptMethod):
    Options = SelfTrainOptions
    options: SelfTrainOptions
    needs_labels = False
    accepts_shots = True

    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation:
        o = self.options
        task = self._task(ctx, data, labelled)
        tuners, params = self._trainable(ctx, task.tower)
        opt = torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
        g = torch.Generator().manual_seed(ctx.seed)
        history: list[dict[str, float | int | None]] = []
        previous: torch.Tensor | None = None
        with progress_bar("rounds", disable=not ctx.progress) as bar:
            bar_task = bar.add_task("self-training", total=o.rounds)
            for r in range(o.rounds):
                emb = embed_inputs(task.tower, task.inputs)
                view_a = task.propagated(o, emb)
                view_b = centroid_labels(emb, (o.scale * emb @ task.classes.cpu().T).softmax(1))
                agree = view_a == view_b
                changed = None if previous is None else float((view_a != previous).float().mean())
                history.append(
                    {"round": r, "agreement": float(agree.float().mean()), "changed": changed}
                )
                previous = view_a
                set_lr_factor(opt, cosine(r, o.rounds))  # one rate per round
                batches = shuffled_batches(len(task.inputs), o.batch_size, g, min_size=2)
                task.tower.train()
                fit(opt, batches, partial(self._batch_loss, task, view_a, agree))
                task.tower.eval()
                bar.advance(bar_task)
        freeze_except(task.tower, [])
        return self.new_adaptation(
            ctx,
            tuners=tuners,
            tower_states=self._states(ctx, task.tower),
            head=self._centroid_head(task) if o.head == "centroids" else None,
            info={"rounds": history},
        )

    def _task(
        self, ctx: AdaptContext, data: MultiModalDataset, labelled: MultiModalDataset | None
    ) -> _Task:
        shots = None
        if labelled is not None and len(labelled):
            shots = (modality_tensor(labelled, ctx.modality), require_labels(labelled, self.name))
        with torch.no_grad():
            classes = ctx.class_embeddings().to(ctx.device)
        tower = ctx.space.towers[ctx.modality]
        return _Task(tower, modality_tensor(data, ctx.modality), classes, shots, ctx.device)

    def _trainable(
        self, ctx: AdaptContext, tower: Tower
    ) -> tuple[dict[str, Tuner], Iterable[torch.nn.Parameter]]:
        """The tuners added (LoRA) and the parameters trained (`params`)."""
        o = self.options
        if o.params == "lora":
            tuner = build_tuner("lora", {"r": o.lora_rank})
            tuner.attach(tower)
            return {ctx.modality: tuner}, tuner.parameters()
        params = list(tower.parameters()) if o.params == "all" else norm_parameters(tower)
        freeze_except(tower, params)
        return {}, params

    def _batch_loss(
        self, task: _Task, view_a: torch.Tensor, agree: torch.Tensor, idx: torch.Tensor
    ) -> torch.Tensor:
        """Information maximisation, plus cross-entropy to view A where the views agree, plus
        cross-entropy on the labelled shots (which join every batch) when there are any."""
        o = self.options
        modality = task.tower.modality
        x = task.inputs[idx]
        if o.augment:
            x = modality.augment(x)
        logits = o.scale * task.tower(x.to(task.device)) @ task.classes.T
        loss = information_maximisation(logits, o.diversity_weight)
        if task.shots is not None:
            shots_x, shots_y = task.shots
            xs = modality.augment(shots_x) if o.augment else shots_x
            shot_logits = o.scale * task.tower(xs.to(task.device)) @ task.classes.T
            loss = loss + o.pseudo_weight * F.cross_entropy(shot_logits, shots_y.to(task.device))
        mask = agree[idx].to(task.device)
        if bool(mask.any()):
            target = view_a[idx].to(task.device)[mask]
            ce = F.cross_entropy(logits[mask], target, reduction="sum")
            loss = loss + o.pseudo_weight * ce / len(idx)
        return loss

    def _centroid_head(self, task: _Task) -> torch.Tensor:
        """The class centroids of the adapted embeddings under the final propagated labels."""
        emb = embed_inputs(task.tower, task.inputs)
        final = task.propagated(self.options, emb)
        one_hot = F.one_hot(final, task.classes.shape[0]).float()
        return F.normalize(one_hot.T @ emb + task.classes.cpu() * 1e-3, dim=1)

    def _states(self, ctx: AdaptContext, tower: Tower) -> dict[str, dict[str, torch.Tensor]]:
        """The tower weights the adapter stores: none for LoRA (the tuner holds them)."""
        if self.options.params == "lora":
            return {}
        if self.options.params == "norm":
            return {ctx.modality: norm_state(tower)}
        return {ctx.modality: {k: v.detach().cpu().clone() for k, v in tower.state_dict().items()}}
