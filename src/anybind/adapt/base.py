"""The adaptation contract: a method takes a space and target data and returns an `Adaptation`.

An `Adaptation` is everything a method changed, kept apart from the base run so it can be saved as
a small adapter file: tuners attached to towers (LoRA, IA3, bottleneck adapters, prompts), tuned
normalisation layers (TENT, self-training), and/or a classification head over one modality's
embeddings (probes). Methods that must not see labels declare `needs_labels = False` and are
handed an `UnlabelledView` of the data, whose labels cannot be read (see `adapt.views`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError
from anybind.registry import Registry
from anybind.space import Space
from anybind.tuners.base import Tuner


class MethodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class AdaptContext:
    """What every method knows besides the data: the space, the target modality, the classes."""

    space: Space
    modality: str
    class_names: list[str]
    templates: list[str]
    text: str
    seed: int = 0
    progress: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.space.parameters()).device

    def class_embeddings(
        self, class_names: list[str] | None = None, templates: list[str] | None = None
    ) -> torch.Tensor:
        """(C, D) unit-norm class embeddings from the text tower (prompt ensemble). Gradients
        flow when the text tower has trainable parameters (prompt tuning)."""
        names = class_names or self.class_names
        temps = templates or self.templates
        prompts = [t.format(c) for c in names for t in temps]
        emb = self.space.embed(self.text, prompts).float()
        emb = F.normalize(emb.view(len(names), len(temps), -1), dim=-1).mean(dim=1)
        return F.normalize(emb, dim=-1)


def make_context(
    space: Space,
    modality: str,
    *,
    class_names: list[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> AdaptContext:
    """The context for adapting `space` to classify `modality`: class names from the run's
    config (or `class_names`), its templates, and the text tower that names the classes."""
    config = space.config
    names = class_names or config.data.class_names
    if not names:
        raise AnybindError("adaptation needs class names (data.class_names in the run's config)")
    text = next((m for m, t in space.towers.items() if t.modality.name == "text"), None)
    if text is None:
        raise AnybindError("adaptation needs a text tower to name the classes")
    if modality not in space.towers and modality not in space.derived_names():
        known = ", ".join([*space.towers, *space.derived_names()])
        raise AnybindError(f"the space has no modality '{modality}' (has {known})")
    templates = config.eval.templates.get(modality, config.eval.default_templates)
    return AdaptContext(space, modality, list(names), list(templates), text, seed, progress)


@dataclass
class Adaptation:
    """The result of a method: what it changed on top of the unchanged base space."""

    method: str
    modality: str
    class_names: list[str]
    templates: list[str]
    #: tower name → attached tuner (its state is saved, the base weights are not)
    tuners: dict[str, Tuner] = field(default_factory=dict)
    #: tower name → tuned tensors of that tower (normalisation layers, or a whole small tower)
    tower_states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    #: (C, D) classifier over the modality's embeddings, rows in `class_names` order
    head: torch.Tensor | None = None
    head_scale: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def classifier(self, ctx: AdaptContext, class_names: list[str] | None = None) -> torch.Tensor:
        """(C, D) class weights for `class_names`: head rows where the head knows the class,
        text-prompt embeddings (through any tuned text tower) for the others."""
        names = class_names or self.class_names
        with torch.no_grad():
            text = ctx.class_embeddings(names, self.templates).cpu()
        if self.head is None:
            return text
        rows = [
            self.head[self.class_names.index(n)] if n in self.class_names else text[i]
            for i, n in enumerate(names)
        ]
        return torch.stack(rows)

    @torch.no_grad()
    def logits(self, ctx: AdaptContext, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings @ self.classifier(ctx).T


class AdaptMethod(ABC):
    """One adaptation method, registered by `name` in `anybind.adapt.METHODS`."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: False: the method gets an unlabelled view of the data (source-free, test-time methods)
    needs_labels: ClassVar[bool] = True
    #: a label-free method that can also use K labelled shots per class (semi-supervised): it
    #: gets the shots as `labelled` and the rest of the adaptation data as an unlabelled view
    accepts_shots: ClassVar[bool] = False
    #: True: the method reads only embeddings (a head over them), so it also adapts a modality
    #: computed from towers (a fusion's joint embedding, a predicted one); False: it tunes a
    #: tower
    over_embeddings: ClassVar[bool] = False

    def __init__(self, options: MethodOptions | None = None):
        self.options = options or self.Options()

    @abstractmethod
    def adapt(
        self,
        ctx: AdaptContext,
        data: MultiModalDataset,
        labelled: MultiModalDataset | None = None,
    ) -> Adaptation: ...

    def new_adaptation(self, ctx: AdaptContext, **kw: Any) -> Adaptation:
        return Adaptation(
            method=self.name,
            modality=ctx.modality,
            class_names=list(ctx.class_names),
            templates=list(kw.pop("templates", ctx.templates)),
            options=self.options.model_dump(),
            **kw,
        )


def require_labels(data: MultiModalDataset, method: str) -> torch.Tensor:
    labels = data.labels()
    if bool((labels < 0).any()):
        raise AnybindError(
            f"'{method}' needs labelled samples; {int((labels < 0).sum())} have no label"
        )
    return labels


METHODS: Registry[type[AdaptMethod]] = Registry("adaptation method", names_attribute="name")
