"""The tuner contract: a few trainable tensors added to ONE tower's encoder, base weights untouched.

A tuner is built from its options, then attached to a `Tower`:

    tuner = build_tuner("lora", {"r": 4})
    tuner.attach(space.towers["image"])    # base params frozen, tuner params trainable
    ...train tuner.parameters()...
    state = tuner.state_dict()              # only the tuner's tensors (safetensors-ready)
    tuner.detach()                          # the encoder is exactly what it was before

`attach` edits `tower.encoder` in place (peft layer injection, forward hooks, a wrapped
`forward`) and registers the tuner's own tensors inside the encoder, so that `tower.to(device)`
moves them and `tower.parameters()` (hence an optimiser over the parameters that require grad)
sees them. It sets `requires_grad=False` on every base parameter of the tower (encoder and
projection) and `True` on the tuner's; `detach` restores each base flag as it was.

A frozen text tower memoises encoder features per string (`Tower.cache_features`); since a tuner
changes what the encoder computes, `attach` switches the memo off (and empties it) and `detach`
switches it back on.

`state_dict` keys are stable names that do not depend on where the tower sits in a `Space`:
dotted paths inside the encoder for per-layer tensors (peft's convention with the adapter name
dropped, e.g. `model.encoder.layer.0.attention.self.query.lora_A.weight`), or a fixed name
(`prompts`, `ctx`) for prompt tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from anybind.errors import AnybindError
from anybind.registry import Registry

if TYPE_CHECKING:
    from anybind.space.model import Tower

#: The attribute under which a tuner registers its own module inside the encoder.
TUNER_MODULE = "anybind_tuner"
#: A plain attribute set on an encoder while a tuner is attached (the tuner's name).
_MARKER = "_anybind_tuner_name"


class TunerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def encoder_type(encoder: nn.Module) -> str:
    """The config `type` of an anybind encoder (e.g. "image_cnn"), else its class name."""
    options = getattr(encoder, "options", None)
    kind = getattr(options, "type", None)
    return str(kind) if kind else type(encoder).__name__


def hf_model(encoder: nn.Module) -> nn.Module | None:
    """The transformers model inside a Hugging Face encoder (hf_text/hf_vision/hf_audio)."""
    from transformers import PreTrainedModel

    model = getattr(encoder, "model", None)
    return model if isinstance(model, PreTrainedModel) else None


def transformer_layers(encoder: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The stack of transformer layers of an encoder: the first `nn.ModuleList` named `layer` or
    `layers` (BERT `model.encoder.layer`, ViT/AST `model.layers`, CLIP/wav2vec2
    `...encoder.layers`, torch `nn.TransformerEncoder` `body.layers`), as (dotted name, list).
    Its layers must hold an attention module (a class named *Attention*), which tells a
    transformer stack from, e.g., the `layers` of a convolutional stage."""
    for name, module in encoder.named_modules():
        if name.split(".")[0] == TUNER_MODULE:
            continue
        if (
            isinstance(module, nn.ModuleList)
            and len(module)
            and name.split(".")[-1] in ("layer", "layers")
            and any("Attention" in type(m).__name__ for m in module[0].modules())
        ):
            return name, module
    return None


def tuner_module(encoder: nn.Module) -> nn.Module:
    return encoder.get_submodule(TUNER_MODULE)


class Tuner(ABC):
    """Base class of all tuners. Subclasses set `name` and `Options` and implement the hooks
    `_attach`, `_detach` and `_named_parameters`."""

    name: ClassVar[str]
    Options: ClassVar[type[TunerOptions]] = TunerOptions
    #: Whether `merge` can fold the tuner into the base weights.
    mergeable: ClassVar[bool] = False

    def __init__(self, options: TunerOptions):
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} takes {self.Options.__name__}")
        self.options = options
        self.tower: Tower | None = None
        self._grad_flags: list[tuple[nn.Parameter, bool]] = []
        self._cache_features = False

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _attach(self, tower: Tower) -> None:
        """Modify `tower.encoder` in place and create the tuner's tensors."""

    @abstractmethod
    def _detach(self) -> None:
        """Undo `_attach`: the encoder's modules, forward and attributes as before."""

    @abstractmethod
    def _named_parameters(self) -> dict[str, nn.Parameter]:
        """Stable name → the live tuner parameter (the keys of `state_dict`)."""

    # ------------------------------------------------------------------ public API

    @property
    def attached(self) -> bool:
        return self.tower is not None

    @property
    def encoder(self) -> nn.Module:
        return self._require_tower().encoder

    def attach(self, tower: Tower) -> None:
        if self.tower is not None:
            raise AnybindError(f"this {self.name} tuner is already attached to a tower")
        encoder = tower.encoder
        other = getattr(encoder, _MARKER, None)
        if other is not None:
            raise AnybindError(
                f"tower '{tower.modality.name}' already has a '{other}' tuner attached; "
                "detach it first"
            )
        self._grad_flags = [(p, p.requires_grad) for p in tower.parameters()]
        try:
            self._attach(tower)  # an unsupported encoder raises, and `_attach` undoes its edits
        except BaseException:
            for p, flag in self._grad_flags:
                p.requires_grad_(flag)
            self._grad_flags = []
            raise
        object.__setattr__(encoder, _MARKER, self.name)
        self.tower = tower
        own = {id(p) for p in self.parameters()}
        for p in tower.parameters():
            p.requires_grad_(id(p) in own)
        self._cache_features = tower.cache_features
        tower.cache_features = False
        tower._cache.clear()

    def detach(self) -> None:
        tower = self._require_tower()
        self._detach()
        object.__delattr__(tower.encoder, _MARKER)
        for p, flag in self._grad_flags:
            p.requires_grad_(flag)
        self._grad_flags = []
        tower.cache_features = self._cache_features
        tower._cache.clear()
        self.tower = None

    def parameters(self) -> list[nn.Parameter]:
        self._require_tower()
        return list(self._named_parameters().values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._require_tower()
        return {
            k: p.detach().to("cpu", copy=True).contiguous()
            for k, p in self._named_parameters().items()
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = self._named_parameters() if self.attached else None
        if own is None:
            raise AnybindError(f"attach the {self.name} tuner to a tower before loading weights")
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [
            f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
            for k in sorted(set(own) & set(state))
            if tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or shapes:
            parts = []
            if missing:
                parts.append(f"missing {_short(missing)}")
            if unexpected:
                parts.append(f"unexpected {_short(unexpected)}")
            if shapes:
                parts.append(f"mis-shaped {_short(shapes)}")
            raise AnybindError(
                f"{self.name} weights do not fit this tower "
                f"({encoder_type(self.encoder)}): " + "; ".join(parts)
            )
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(state[k].to(device=p.device, dtype=p.dtype))

    def merge(self) -> None:
        raise AnybindError(
            f"the {self.name} tuner cannot be merged into the base weights (only lora and ia3 can)"
        )

    def unmerge(self) -> None:
        raise AnybindError(
            f"the {self.name} tuner cannot be merged into the base weights (only lora and ia3 can)"
        )

    # ------------------------------------------------------------------ helpers

    def _require_tower(self) -> Tower:
        if self.tower is None:
            raise AnybindError(f"the {self.name} tuner is not attached to a tower")
        return self.tower

    def _unsupported(self, tower: Tower, why: str) -> AnybindError:
        return AnybindError(
            f"{why}; tower '{tower.modality.name}' uses {encoder_type(tower.encoder)}"
        )

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"{type(self).__name__}({self.options!r}, {state})"


def _short(items: list[Any], n: int = 5) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return "[" + ", ".join(str(i) for i in items[:n]) + "]" + more


def register_tuner_module(encoder: nn.Module, module: nn.Module) -> None:
    """Put the tuner's own module inside the encoder (moved by `.to`, seen by `.parameters`), on
    the encoder's device and dtype and in its train/eval mode."""
    ref = next((p for p in encoder.parameters() if p.is_floating_point()), None)
    if ref is not None:
        module.to(device=ref.device, dtype=ref.dtype)
    module.train(encoder.training)
    encoder.add_module(TUNER_MODULE, module)


def remove_tuner_module(encoder: nn.Module) -> None:
    if TUNER_MODULE in encoder._modules:
        del encoder._modules[TUNER_MODULE]


TUNERS: Registry[type[Tuner]] = Registry("tuner", names_attribute="name")
