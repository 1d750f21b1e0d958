"""`tent`: test-time entropy minimisation (Wang et al., ICLR 2021).

Only the affine parameters of the tower's normalisation layers (BatchNorm and LayerNorm) are
trained; BatchNorm normalises with each test batch's own statistics, and its running statistics
are restarted and accumulated over the target stream (AdaBN), so the saved adapter also predicts
one sample at a time. Loss: mean Shannon entropy of the softmax over the class text embeddings;
one Adam step per batch, online over the unlabelled stream (`epochs` passes).
"""

from __future__ import annotations

import torch

from anybind.adapt.base import METHODS, Adaptation, AdaptContext, AdaptMethod, MethodOptions
from anybind.adapt.norm_layers import (
    BATCH_NORMS,
    freeze_except,
    norm_parameters,
    norm_state,
    restart_batch_statistics,
)
from anybind.adapt.trainer import fit, shuffled_batches
from anybind.adapt.views import modality_tensor
from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError
from anybind.progress import progress_bar


class TentOptions(MethodOptions):
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 1
    scale: float = 20.0
    #: restart BatchNorm running statistics on the target stream (AdaBN)
    restart_statistics: bool = True


@METHODS.register("tent")
class Tent(AdaptMethod):
    Options = TentOptions
    options: TentOptions
    needs_labels = False

    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation:
        o = self.options
        tower = ctx.space.towers[ctx.modality]
        params = norm_parameters(tower)
        if not params:
            raise AnybindError(
                f"tent needs normalisation layers (BatchNorm/LayerNorm) in tower "
                f"'{ctx.modality}'; its encoder has none"
            )
        inputs = modality_tensor(data, ctx.modality)
        with torch.no_grad():
            classes = ctx.class_embeddings().to(ctx.device)
        freeze_except(tower, params)
        if o.restart_statistics:
            restart_batch_statistics(tower)
        opt = torch.optim.Adam(params, lr=o.lr, betas=(0.9, 0.999))
        g = torch.Generator().manual_seed(ctx.seed)

        def entropy(idx: torch.Tensor) -> torch.Tensor:
            tower.eval()
            for m in tower.modules():  # batch statistics, no dropout
                if isinstance(m, BATCH_NORMS):
                    m.train()
            logits = o.scale * tower(inputs[idx].to(ctx.device)) @ classes.T
            p = logits.softmax(1)
            return -(p * logits.log_softmax(1)).sum(1).mean()

        entropies: list[float] = []
        with progress_bar("samples", disable=not ctx.progress) as bar:
            task = bar.add_task("tent", total=o.epochs * len(inputs))
            for _ in range(o.epochs):
                batches = shuffled_batches(len(inputs), o.batch_size, g)
                entropies += fit(
                    opt, batches, entropy, after_step=lambda idx: bar.advance(task, len(idx))
                )
        tower.eval()
        freeze_except(tower, [])
        return self.new_adaptation(
            ctx,
            tower_states={ctx.modality: norm_state(tower)},
            info={"entropy_first": entropies[0], "entropy_last": entropies[-1]},
        )
