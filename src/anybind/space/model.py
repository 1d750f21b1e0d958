"""The shared space: one tower (encoder + projection) per modality and a learned logit scale.

`embed` returns unit-norm embeddings (B, D). The temperature is stored as log(1/τ) and clamped to
[0, log(max_logit_scale)] whenever it is read (CLIP), so it can neither flip sign nor explode.
A frozen text tower memoises its encoder features per string, since a frozen encoder maps the
same caption to the same features every time (the digits benchmark trains on 80 distinct captions).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anybind.config.schema import Config
from anybind.encoders import Encoder, build_encoder
from anybind.encoders.backbone import Backbone
from anybind.encoders.token_transformer import BackboneEncoder
from anybind.errors import AnybindError
from anybind.modalities import Modality, build_modality
from anybind.space.fusion import Fusion, build_fusion, drop_modalities
from anybind.space.predictor import Predictor
from anybind.space.projection import build_projection
from anybind.tuners import Tuner, build_tuner


class Tower(nn.Module):
    def __init__(self, modality: Modality, encoder: Encoder, projection: nn.Module):
        super().__init__()
        self.modality = modality
        self.encoder = encoder
        self.projection = projection
        self.cache_features = False
        self.frozen = False
        self.frozen_projection = False
        self._cache: dict[str, torch.Tensor] = {}

    def forward(self, batch: Any) -> torch.Tensor:  # (B, D) unit-norm
        return F.normalize(self.projection(self.features(batch)), dim=-1)

    def features(self, batch: Any) -> torch.Tensor:  # (B, D_enc)
        if not (self.cache_features and isinstance(batch, list)):
            return self.encoder(batch)
        # one string at a time: batched padding changes float rounding, and the features of a
        # caption must not depend on which batch first met it (exact resume needs that)
        with torch.no_grad():
            for text in dict.fromkeys(b for b in batch if b not in self._cache):
                self._cache[text] = self.encoder([text]).float()[0]
        return torch.stack([self._cache[b] for b in batch])

    def stop_caching(self) -> None:
        """Encode every batch at once and keep nothing (see Space.stop_caching)."""
        self.cache_features = False
        self._cache.clear()

    def train(self, mode: bool = True) -> Tower:
        super().train(mode)
        if self.frozen:  # a frozen encoder stays in eval mode (no dropout, fixed BN statistics)
            self.encoder.eval()
        if self.frozen_projection:
            self.projection.eval()
        return self


class Space(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        towers = {}
        for name, mc in config.modalities.items():
            modality = build_modality(mc.kind or name, mc.modality_options(name))
            encoder = build_encoder(mc.encoder_options(), modality)
            projection = build_projection(
                mc.projection,
                encoder.embed_dim,
                config.space.dim,
                key=f"modalities.{name}.projection",
            )
            towers[name] = Tower(modality, encoder, projection)
        self.towers = nn.ModuleDict(towers)
        self.backbone: Backbone | None = None
        if config.backbone is not None:
            self.backbone = Backbone(config.backbone, config.backbone_modalities())
            for name, tower in towers.items():
                if isinstance(tower.encoder, BackboneEncoder):
                    tower.encoder.attach(self.backbone, name)
        init = math.log(1.0 / config.space.init_temperature)
        self.log_logit_scale = nn.Parameter(
            torch.tensor(init), requires_grad=config.space.learn_temperature
        )
        self.apply_freezing()
        self.fusion: Fusion | None = None
        if config.fusion is not None:
            f = config.fusion
            self.fusion = build_fusion(f.type, f.modalities, config.space.dim, f.layers, f.heads)
        self.predictor: Predictor | None = None
        if config.predictor is not None:
            p = config.predictor
            classes = len(config.data.class_names or [])
            self.predictor = Predictor(
                p.modalities, config.space.dim, p.hidden, p.kind, classes, p.learn_values
            )
        self.tuners: dict[str, Tuner] = {}
        for name, mc in config.modalities.items():
            if mc.tuner is not None:
                self.attach_tuner(name, mc.tuner)

    def attach_tuner(self, name: str, section: dict[str, Any]) -> None:
        """A tower's configured tuner: the encoder stays frozen (and in eval mode); the tuner
        and, unless frozen, the projection train."""
        options = {k: v for k, v in section.items() if k != "type"}
        tuner = build_tuner(section["type"], options, key=f"modalities.{name}.tuner")
        tower = self.towers[name]
        tuner.attach(tower)
        tower.frozen = True
        for p in tower.projection.parameters():
            p.requires_grad_(not self.config.modalities[name].freeze_projection)
        self.tuners[name] = tuner

    @property
    def modalities(self) -> dict[str, Modality]:
        return {name: tower.modality for name, tower in self.towers.items()}

    def stop_caching(self) -> None:
        """For embedding collections and answering queries: each batch of texts is encoded at
        once and nothing is kept (the cache of frozen text features is for training, which
        meets the same captions every epoch; queries would grow it without bound)."""
        for tower in self.towers.values():
            tower.stop_caching()

    def apply_freezing(self) -> None:
        for name, mc in self.config.modalities.items():
            tower = self.towers[name]
            for p in tower.encoder.parameters():
                p.requires_grad_(not mc.freeze_encoder)
            for p in tower.projection.parameters():
                p.requires_grad_(not mc.freeze_projection)
            tower.frozen = mc.freeze_encoder
            tower.frozen_projection = mc.freeze_projection
            tower.cache_features = mc.freeze_encoder and tower.modality.name == "text"
        if self.backbone is not None:
            # the shared body trains when a tower that runs it trains its encoder (never in an
            # extended run: it is the base run's)
            users = self.config.backbone_modalities()
            trains = self.config.base is None and any(
                not self.config.modalities[m].freeze_encoder for m in users
            )
            self.backbone.requires_grad_(trains)

    def fuse(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        *,
        dropout: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint embedding (B, D) of the fused modalities present in each row, and the mask
        of rows that hold any (B,); `dropout`: hide modalities at the configured rates first."""
        assert self.fusion is not None and self.config.fusion is not None
        names = [m for m in self.fusion.modalities if m in features]
        present = {m: masks[m].bool() for m in names}
        if dropout:
            present = drop_modalities(present, self.config.fusion.dropout)
        if not names:
            raise AnybindError("no modality of the fusion is in this batch")
        inputs = {m: features[m] for m in names}
        if self.config.fusion.fill == "predicted" and self.predictor is not None:
            inputs, present = self.fill_predicted(inputs, present)
        joint = self.fusion(inputs, present)
        any_present = torch.stack(list(present.values()), dim=1).any(dim=1)
        return joint * any_present[:, None].to(joint.dtype), any_present

    def fill_predicted(
        self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Absent fused modalities replaced by their predicted embeddings, predicted from what
        is present (after modality dropout: a hidden modality never feeds its own estimate)."""
        assert self.predictor is not None
        known = {m: e for m, e in inputs.items() if m in self.predictor.modalities}
        predicted = self.predictor(known, {m: present[m] for m in known})
        inputs, present = dict(inputs), dict(present)
        for m in known:
            estimate, has = predicted.get(f"{m}_predicted", (None, None))
            if estimate is None:
                continue
            fill = ~present[m] & has
            inputs[m] = torch.where(fill[:, None], estimate.to(inputs[m].dtype), inputs[m])
            present[m] = present[m] | fill
        return inputs, present

    def derived(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        *,
        training: bool = False,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The embeddings computed from other embeddings: the fusion's joint embedding and the
        predictor's estimates, each with its row mask. In training, modality dropout hides
        inputs of the fusion, and a prediction is scored only where its target is present."""
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        fusion = self.config.fusion
        if (
            self.fusion is not None
            and fusion is not None
            and features.keys() & {*fusion.modalities}
        ):
            out[fusion.name] = self.fuse(features, masks, dropout=training)
        if self.predictor is not None:
            names = [m for m in self.predictor.modalities if m in features]
            present = {m: masks[m].bool() for m in names}
            for name, (estimate, has) in self.predictor(
                {m: features[m] for m in names}, present
            ).items():
                target = name.removesuffix("_predicted")
                if training:
                    has = has & present.get(target, torch.zeros_like(has))
                out[name] = (estimate, has)
        return out

    def derived_names(self) -> list[str]:
        """The modalities computed from other embeddings: the fusion's, the predicted ones."""
        names = [self.config.fusion.name] if self.config.fusion else []
        if self.config.predictor is not None:
            names += [f"{m}_predicted" for m in self.config.predictor.modalities]
        return names

    def derived_inputs(self, name: str) -> list[str]:
        """The towers a derived modality is computed from."""
        if self.config.fusion is not None and name == self.config.fusion.name:
            return list(self.config.fusion.modalities)
        if self.config.predictor is not None and name.endswith("_predicted"):
            return [m for m in self.config.predictor.modalities if m != name[: -len("_predicted")]]
        raise AnybindError(f"'{name}' is not a derived modality of this space")

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(0.0, math.log(self.config.space.max_logit_scale)).exp()

    def embed(self, modality: str, batch: Any) -> torch.Tensor:
        return self.towers[modality](batch)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embed every modality present in a collated batch. Absent rows get zero vectors."""
        out = {}
        for name, tower in self.towers.items():
            if name not in batch:
                continue
            mask = batch[f"{name}_mask"]
            if not bool(mask.any()):
                continue
            rows = mask.nonzero().flatten()
            data = batch[name]
            present = [data[i] for i in rows.tolist()] if isinstance(data, list) else data[rows]
            emb = tower(present)  # (n_present, D)
            full = emb.new_zeros(mask.shape[0], emb.shape[1])
            out[name] = full.index_copy(0, rows.to(emb.device), emb)
        return out

    def external_prefixes(self) -> list[str]:
        """State-dict prefixes not stored in run folders: frozen pretrained encoders, which are
        reloaded from their `path` (saves ~90 MB per checkpoint for MiniLM), and in an extended
        run the base run's towers and logit scale, which are loaded from the base run."""
        prefixes = [
            f"towers.{name}.encoder."
            for name, mc in self.config.modalities.items()
            # a tuned encoder is stored whole: its tuner lives inside it
            if mc.freeze_encoder
            and mc.tuner is None
            and getattr(self.towers[name].encoder, "pretrained", False)
        ]
        base = self.config.base
        if base is not None:
            prefixes += [f"towers.{m}." for m in base.modalities] + ["log_logit_scale"]
            prefixes += ["backbone."] if self.backbone is not None else []
        return prefixes

    def persistent_state(
        self, state: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The state dict (or `state`, e.g. gathered from shards) less the external prefixes."""
        skip = tuple(self.external_prefixes())
        state = self.state_dict() if state is None else state
        return {k: v for k, v in state.items() if not (skip and k.startswith(skip))}

    def load_persistent_state(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        wrong = [
            f"{k}: {tuple(v.shape)} in the weights, {tuple(own[k].shape)} in the config"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ]
        if wrong:
            raise AnybindError(f"weights do not fit the config: {'; '.join(wrong[:3])}")
        missing, unexpected = self.load_state_dict(state, strict=False)
        skip = tuple(self.external_prefixes())
        missing = [k for k in missing if not (skip and k.startswith(skip))]
        if missing or unexpected:
            raise AnybindError(
                f"weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits between two sets of unit-norm embeddings: (Na, Nb)."""
        return self.logit_scale() * a @ b.T
