"""One training step's maths: embed → (gather across ranks) → loss terms → backward.

`Aligner` holds the space and the objective as one module, so that DistributedDataParallel
sees every trainable parameter (towers, temperature, the objective's own scales and biases).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from anybind.config import Config
from anybind.errors import TrainingError
from anybind.objectives import Objective, group_ids
from anybind.objectives.distributed import gather_no_grad, gather_with_grad
from anybind.recipes.fsdp import average_replicated_grads
from anybind.recipes.micro_batches import Replay, grad_cache_backward
from anybind.space import Space


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Aligner(nn.Module):
    def __init__(self, space: Space, objective: Objective, config: Config):
        super().__init__()
        self.space = space
        self.objective = objective
        self.config = config
        #: run every tower on every step, on placeholder rows where a modality is absent (FSDP:
        #: a sharded tower's all-gather and reduce-scatter are collectives every rank must join)
        self.every_tower = False
        #: parameters kept whole under FSDP, whose gradients are averaged after the backward
        self.replicated: list[nn.Parameter] = []

    def forward(
        self, batch: dict[str, Any], step: int, replay: Replay | None = None
    ) -> tuple[torch.Tensor, dict] | torch.Tensor:
        """The loss and its named terms over the global batch (this rank's rows and, under
        torchrun, every other rank's, gathered with gradient). With `replay`, GradCache's
        second pass over one chunk: a scalar whose gradient is the chunk's share."""
        if replay is not None:
            return self.replayed(batch, replay, step)
        if self.space.backbone is not None:
            self.space.backbone.take_routing()  # only this step's routing counts
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            features, masks, groups, rows = self.gathered(batch)
            if self.objective.local:
                return self.local_loss(features, masks, groups, rows, step)
        else:
            features = self.space(batch)
            masks = {name: batch[f"{name}_mask"] for name in features}
            groups = batch_groups(batch, self.config)
            for name, (emb, mask) in self.space.derived(
                features, masks, training=self.space.training
            ).items():
                features[name], masks[name] = emb, mask
        return self.loss_of(features, masks, groups, step)

    def loss_of(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        present, present_masks = present_only(features, masks)
        terms = self.objective(present, present_masks, groups, self.space.logit_scale())
        require_terms(terms, step)
        terms.update(self.balance_terms())
        loss = torch.stack([v.float() for v in terms.values()]).sum()
        require_finite(loss, terms, step)
        return loss, terms

    def balance_terms(self) -> dict[str, torch.Tensor]:
        """A routed backbone's auxiliary losses over the tokens this forward routed."""
        backbone = self.space.backbone
        return backbone.balance_terms() if backbone is not None and backbone.routed else {}

    def local_loss(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        rows: slice,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """An objective with a local form (InfoNCE, dense SigLIP): this rank scores only its own
        rows against every rank's. Returns world × its share, which DistributedDataParallel's
        average turns into the full-batch gradient, and the global terms (summed over ranks) for
        logging and for the finiteness check every rank must agree on."""
        present, present_masks = present_only(features, masks)
        shares = self.objective.local_forward(
            present, present_masks, groups, self.space.logit_scale(), rows
        )
        require_terms(shares, step)
        # this rank's routing: DistributedDataParallel's average makes it the ranks' mean
        shares.update({k: v / dist.get_world_size() for k, v in self.balance_terms().items()})
        stacked = torch.stack([v.float() for v in shares.values()])
        totals = stacked.detach().clone()
        dist.all_reduce(totals)
        terms = dict(zip(shares, totals, strict=True))
        require_finite(totals.sum(), terms, step)
        return stacked.sum() * dist.get_world_size(), terms

    def gathered(self, batch: dict[str, Any]) -> tuple[dict, dict, torch.Tensor | None, slice]:
        """Every configured modality embedded on this rank's rows, then the embeddings derived
        from them (fusion, predictors: computed on this rank's rows, with this rank's modality
        dropout), all gathered from every rank with gradient; and where this rank's rows sit in
        the gathered batch."""
        local = self.embed_chunk(batch, torch.arange(len(batch["id"])))
        masks = {name: batch[f"{name}_mask"] for name in local}
        for name, (emb, mask) in self.space.derived(
            local, masks, training=self.space.training
        ).items():
            local[name], masks[name] = emb, mask
        return self.global_batch(local, batch, masks)

    def embed_chunk(self, batch: dict[str, Any], rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every configured modality's embeddings of some rows (zeros where absent)."""
        return {
            name: embed_rows(self.space, batch, name, rows, every_tower=self.every_tower)
            for name in self.space.towers
        }

    def global_batch(
        self,
        local: dict[str, torch.Tensor],
        batch: dict[str, Any],
        local_masks: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict, dict, torch.Tensor | None, slice]:
        """This rank's embeddings of its whole batch gathered with every rank's, in rank order
        and in the same order on every rank (the gathers are collectives), with the gathered
        masks (`local_masks`, default the batch's) and positive groups; and where this rank's
        rows sit. In one process: itself."""
        n = len(batch["id"])
        if local_masks is None:
            local_masks = {name: batch[f"{name}_mask"] for name in local}
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return local, local_masks, batch_groups(batch, self.config), slice(0, n)
        device = batch["label"].device
        features, masks = {}, {}
        offset = 0
        for name, embedded in local.items():
            features[name], offset = gather_with_grad(embedded)
            masks[name] = gather_no_grad(local_masks[name].long())[0].bool()
        labels = gather_no_grad(batch["label"])[0]
        keys = caption_keys(masked_captions(batch), n).to(device)
        groups = group_ids(labels.cpu(), None, self.config.objective.positives)
        if groups is not None:
            groups = merge_caption_groups(groups, gather_no_grad(keys)[0].cpu(), self.config)
            groups = groups.to(device)
        return features, masks, groups, slice(offset, offset + n)

    def replayed(self, batch: dict[str, Any], replay: Replay, step: int) -> torch.Tensor:
        """Σ ⟨embeddings of the chunk, their cached gradient⟩ (+ the loss on the cached
        embeddings, on the last chunk, for the loss's own parameters)."""
        total = torch.zeros((), device=batch["label"].device)
        for name, grad in replay.grads.items():
            embedded = embed_rows(
                self.space, batch, name, replay.rows, every_tower=self.every_tower
            )
            total = total + (embedded.float() * grad.float()).sum()
        if replay.loss_inputs is not None:
            total = total + self.loss_of(*replay.loss_inputs, step)[0]
        return total


def present_only(
    features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The modalities some row of the batch holds, with their masks."""
    present = {n: f for n, f in features.items() if bool(masks[n].any())}
    return present, {n: masks[n] for n in present}


def require_terms(terms: dict[str, torch.Tensor], step: int) -> None:
    if not terms:
        raise TrainingError(
            f"step {step}: no term of the objective applies to the batch (no pair of modalities "
            "is held by two of its rows); check objective.pairs against the data"
        )


def require_finite(loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"step {step}: the loss is {loss.item()} (terms: "
            f"{ {k: v.item() for k, v in terms.items()} }); stopped. Lower optim.lr or "
            "check the data."
        )


def forward_backward(
    model: nn.Module, batch: dict[str, Any], step: int, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss terms of one batch and their gradients in `.grad`. `model` is an `Aligner`, or one
    wrapped in DistributedDataParallel."""
    aligner: Aligner = getattr(model, "module", model)
    config = aligner.config
    with autocast_context(config.optim.precision, device):
        if config.optim.micro_batches > 1:
            loss, terms = grad_cache_backward(model, batch, step)
        else:
            loss, terms = model(batch, step)
            loss.backward()
    if aligner.replicated:
        average_replicated_grads(aligner.replicated)
    terms = {name: v.detach() for name, v in terms.items()}
    # the loss over the global batch (under a local loss, `loss` is world × this rank's share)
    return torch.stack([v.float() for v in terms.values()]).sum(), terms


def embed_rows(
    space: Space, batch: dict[str, Any], name: str, rows: torch.Tensor, *, every_tower: bool = False
) -> torch.Tensor:
    """Embeddings (len(rows), D) of one modality for some rows of a batch; zeros where absent.
    All-absent rows give zeros that require grad exactly when the tower trains, so every rank
    of a distributed run backpropagates through the same gathers; with `every_tower` those
    zeros come from running the trainable tower on the placeholder rows (times zero)."""
    mask = batch[f"{name}_mask"]
    data = batch.get(name)
    picked = None
    if data is not None:
        picked = [data[i] for i in rows.tolist()] if isinstance(data, list) else data[rows]
    if picked is not None and bool(mask[rows].any()):
        return space({name: picked, f"{name}_mask": mask[rows]})[name]
    trains = any(p.requires_grad for p in space.towers[name].parameters())
    if every_tower and trains and picked is not None and len(rows):
        return space.towers[name](picked) * 0.0  # with or without grad: FSDP's gathers run
    trains = trains and torch.is_grad_enabled()
    return torch.zeros(len(rows), space.config.space.dim, device=mask.device, requires_grad=trains)


def batch_groups(batch: dict[str, Any], config: Config) -> torch.Tensor | None:
    groups = group_ids(batch["label"].cpu(), masked_captions(batch), config.objective.positives)
    return groups.to(batch["label"].device) if groups is not None else None


def caption_keys(captions: list[str | None] | None, n: int) -> torch.Tensor:
    """A stable 62-bit key per caption (-1: none), equal on every rank for equal captions."""
    if captions is None:
        return torch.full((n,), -1, dtype=torch.long)
    return torch.tensor(
        [
            -1
            if c is None
            else int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest()) >> 2
            for c in captions
        ],
        dtype=torch.long,
    )


def merge_caption_groups(groups: torch.Tensor, keys: torch.Tensor, config: Config) -> torch.Tensor:
    """`group_ids` of the gathered batch: captions compared through their keys."""
    if config.objective.positives in ("caption", "label_or_caption"):
        has = keys >= 0
        if config.objective.positives == "label_or_caption":
            has &= groups >= 1_000_000_000  # a known label wins over the caption
        _, inverse = torch.unique(keys[has], return_inverse=True)
        groups = groups.clone()
        groups[has] = 2_000_000_000 + inverse
    return groups


def masked_captions(batch: dict[str, Any]) -> list[str | None] | None:
    if "text" not in batch:
        return None
    return [
        t if present else None
        for t, present in zip(batch["text"], batch["text_mask"].tolist(), strict=True)
    ]


def augment(batch: dict[str, Any], space: Space, config: Config) -> dict[str, Any]:
    for name, tower in space.towers.items():
        if name in batch and config.modalities[name].augment and len(batch["id"]):
            batch[name] = tower.modality.augment(batch[name])
    return batch


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }
