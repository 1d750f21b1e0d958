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

import math
from typing import Literal

import torch
import torch.nn.functional as F

from anybind.adapt.base import Adaptation, AdaptContext, AdaptMethod, MethodOptions, require_labels
from anybind.adapt.features import embed_inputs
from anybind.adapt.label_propagation import propagate_labels
from anybind.adapt.norm_layers import freeze_except, norm_parameters, norm_state
from anybind.adapt.views import modality_tensor
from anybind.data.dataset import MultiModalDataset
from anybind.progress import progress_bar


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


class SelfTrain(AdaptMethod):
    name = "self-train"
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
        tower = ctx.space.towers[ctx.modality]
        modality = tower.modality
        inputs = modality_tensor(data, ctx.modality)
        shots_x = shots_y = None
        if labelled is not None and len(labelled):
            shots_x = modality_tensor(labelled, ctx.modality)
            shots_y = require_labels(labelled, self.name)
        with torch.no_grad():
            classes = ctx.class_embeddings().to(ctx.device)
        tuners = {}
        if o.params == "lora":
            from anybind.adapt.tuners import build_tuner

            tuner = build_tuner("lora", {"r": o.lora_rank})
            tuner.attach(tower)
            params = tuner.parameters()
            tuners[ctx.modality] = tuner
        else:
            params = list(tower.parameters()) if o.params == "all" else norm_parameters(tower)
            freeze_except(tower, params)
        opt = torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
        g = torch.Generator().manual_seed(ctx.seed)
        history: list[dict[str, float | int | None]] = []
        previous: torch.Tensor | None = None
        with progress_bar("rounds", disable=not ctx.progress) as bar:
            task = bar.add_task("self-training", total=o.rounds)
            for r in range(o.rounds):
                emb = embed_inputs(tower, inputs)
                probs = (o.scale * emb @ classes.cpu().T).softmax(1)
                seeds = None if shots_x is None else (embed_inputs(tower, shots_x), shots_y)
                view_a = propagate_labels(
                    emb, classes.cpu(), k=o.knn, alpha=o.alpha, labelled=seeds
                ).argmax(1)
                view_b = centroid_labels(emb, probs)
                agree = view_a == view_b
                changed = None if previous is None else float((view_a != previous).float().mean())
                history.append(
                    {"round": r, "agreement": float(agree.float().mean()), "changed": changed}
                )
                previous = view_a
                for group in opt.param_groups:
                    group["lr"] = o.lr * 0.5 * (1 + math.cos(math.pi * r / o.rounds))
                order = torch.randperm(len(inputs), generator=g)
                tower.train()
                for start in range(0, len(order), o.batch_size):
                    idx = order[start : start + o.batch_size]
                    if len(idx) < 2:
                        continue
                    x = inputs[idx]
                    if o.augment:
                        x = modality.augment(x)
                    logits = o.scale * tower(x.to(ctx.device)) @ classes.T
                    loss = information_maximisation(logits, o.diversity_weight)
                    if shots_x is not None:  # the labelled shots join every batch
                        xs = modality.augment(shots_x) if o.augment else shots_x
                        shot_logits = o.scale * tower(xs.to(ctx.device)) @ classes.T
                        loss = loss + o.pseudo_weight * F.cross_entropy(
                            shot_logits, shots_y.to(ctx.device)
                        )
                    mask = agree[idx].to(ctx.device)
                    if bool(mask.any()):
                        ce = F.cross_entropy(
                            logits[mask], view_a[idx].to(ctx.device)[mask], reduction="sum"
                        )
                        loss = loss + o.pseudo_weight * ce / len(idx)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                tower.eval()
                bar.advance(task)
        freeze_except(tower, [])
        head = None
        if o.head == "centroids":
            emb = embed_inputs(tower, inputs)
            seeds = None if shots_x is None else (embed_inputs(tower, shots_x), shots_y)
            final = propagate_labels(
                emb, classes.cpu(), k=o.knn, alpha=o.alpha, labelled=seeds
            ).argmax(1)
            one_hot = F.one_hot(final, len(ctx.class_names)).float()
            head = F.normalize(one_hot.T @ emb + classes.cpu() * 1e-3, dim=1)
        if o.params == "lora":
            states = {}
        elif o.params == "norm":
            states = {ctx.modality: norm_state(tower)}
        else:
            states = {
                ctx.modality: {k: v.detach().cpu().clone() for k, v in tower.state_dict().items()}
            }
        return self.new_adaptation(
            ctx, tuners=tuners, tower_states=states, head=head, info={"rounds": history}
        )
