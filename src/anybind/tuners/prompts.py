"""Prompt tuning: learned input tokens for transformer encoders, base weights untouched.

Which method applies follows the tower's encoder:

- hf_text → CoOp (Zhou et al. 2022): `n_ctx` context vectors of the token-embedding width sit
  right after the first special token ([CLS] / <s>; at the front for tokenizers that add none),
  so "seven" is encoded as `[CLS] ctx_1 … ctx_n seven [SEP]`. The encoder's `forward` is wrapped:
  the text is tokenised (to `max_length - n_ctx` tokens, so the whole sequence still fits the
  encoder's `max_length`), its token embeddings are looked up, the context is spliced in, the
  attention mask (and token-type ids, as segment 0) are extended, and the transformers model
  runs on `inputs_embeds` (it adds position embeddings, so ctx_i sits at position i).
  Pooling: "cls" takes position 0 as before; "mean" averages over every attended position,
  context tokens included, so a context equal to the word embeddings of a string s gives
  exactly the plain encoding of f"{s} {text}" (what a hand-written template would give).
  The context starts as the word embeddings of the first `n_ctx` tokens of `ctx_init`; positions
  it does not cover (all of them when `ctx_init` is None) start as N(0, init_std²) draws.
  `state_dict`: {"ctx": (n_ctx, hidden)}.

- hf_vision (ViT, CLIP vision, ...) and hf_audio (wav2vec2/HuBERT, AST) → VPT (Jia et al.
  2022): `n_tokens` prompt tokens, N(0, init_std²), are inserted at the input of the first
  transformer layer, after the summary tokens (ViT/CLIP: [CLS]; AST: [CLS] and the distillation
  token; wav2vec2-style models, which have none: at the front). A forward pre-hook on each layer
  does it, so the summary token stays at index 0 and `pooler`/`cls` pooling still read it;
  `mean` pooling averages the prompt outputs too. Layer-level attention masks, when there are
  any, are extended to attend to the prompts. With `deep`, every layer gets its own prompts,
  which replace the previous layer's prompt outputs (VPT-deep). Under wav2vec2's layerdrop the
  prompts go in at the first layer that runs.
  `state_dict`: {"prompts": (1 or number of layers, n_tokens, hidden)}.

Anything else (convolutional encoders, text_bytes, an hf_vision CNN) is refused with an
AnybindError naming the tower's encoder type. Options that belong to the other method (n_ctx /
ctx_init for vision and audio; n_tokens / deep for text) are refused when set to anything but
their default (so a `model_dump()` of the options loads back). Prompts cannot be merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.hooks import RemovableHandle

from anybind.encoders.base import tokenize
from anybind.errors import AnybindError
from anybind.tuners.base import (
    TUNERS,
    Tuner,
    TunerOptions,
    encoder_type,
    hf_model,
    register_tuner_module,
    remove_tuner_module,
    transformer_layers,
    tuner_module,
)

if TYPE_CHECKING:
    from anybind.space.model import Tower

_TEXT_ONLY = ("n_ctx", "ctx_init")
_VISION_ONLY = ("n_tokens", "deep")
_SUMMARY_TOKENS = ("cls_token", "class_embedding", "distillation_token")


class PromptOptions(TunerOptions):
    #: hf_text (CoOp): number of learned context vectors after [CLS]
    n_ctx: int = Field(4, ge=1)
    #: hf_text: words whose token embeddings initialise the context (the first n_ctx tokens);
    #: None: random N(0, init_std²)
    ctx_init: str | None = "a photo of a"
    #: hf_vision / hf_audio (VPT): number of prompt tokens after the summary token(s)
    n_tokens: int = Field(8, ge=1)
    #: standard deviation of randomly initialised prompts
    init_std: float = Field(0.02, gt=0)
    #: hf_vision / hf_audio: fresh prompts at every transformer layer (VPT-deep)
    deep: bool = False


class _PromptParams(nn.Module):
    def __init__(self, name: str, value: torch.Tensor):
        super().__init__()
        self.key = name
        self.register_parameter(name, nn.Parameter(value))

    def value(self) -> nn.Parameter:
        param = self._parameters[self.key]
        assert param is not None
        return param


@TUNERS.register("prompt")
class PromptTuner(Tuner):
    Options = PromptOptions
    options: PromptOptions

    def __init__(self, options: PromptOptions):
        super().__init__(options)
        self.method: str | None = None  # "coop" or "vpt" while attached
        self._hooks: list[RemovableHandle] = []
        self._saved_forward: Any = None
        # CoOp
        self._offset = 0
        self._max_length = 0
        # VPT
        self._summary = 0
        self._inserted = False

    # -------------------------------------------------------------------------------- attach

    def _attach(self, tower: Tower) -> None:
        from anybind.encoders.hf_audio import HFAudio
        from anybind.encoders.hf_text import HFText
        from anybind.encoders.hf_vision import HFVision

        encoder = tower.encoder
        needs = "prompt tuning needs a transformer encoder (hf_text, hf_vision, hf_audio)"
        if isinstance(encoder, HFText):
            self._refuse(tower, _VISION_ONLY, "CoOp text prompts")
            self._attach_coop(tower, encoder)
        elif isinstance(encoder, HFVision | HFAudio):
            if hf_model(encoder) is None or transformer_layers(encoder) is None:
                model_type = getattr(encoder, "model_type", "?")
                raise self._unsupported(
                    tower, f"{needs}, not a model without transformer layers ({model_type})"
                )
            self._refuse(tower, _TEXT_ONLY, "visual prompts (VPT)")
            self._attach_vpt(encoder)
        else:
            raise self._unsupported(tower, needs)

    def _refuse(self, tower: Tower, fields: tuple[str, ...], what: str) -> None:
        # a value different from the default: `model_dump()` output (all fields) still loads
        defaults = {f: PromptOptions.model_fields[f].default for f in fields}
        wrong = [f for f in fields if getattr(self.options, f) != defaults[f]]
        if wrong:
            raise AnybindError(
                f"prompt option(s) {wrong} do not apply to tower '{tower.modality.name}' "
                f"({encoder_type(tower.encoder)} gets {what})"
            )

    def _detach(self) -> None:
        encoder = self.encoder
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self.method == "coop":
            del encoder.forward
            if self._saved_forward is not None:
                encoder.forward = self._saved_forward
            self._saved_forward = None
        remove_tuner_module(encoder)
        self.method = None

    def _named_parameters(self) -> dict[str, nn.Parameter]:
        module = tuner_module(self.encoder)
        assert isinstance(module, _PromptParams)
        return {module.key: module.value()}

    def _param(self) -> nn.Parameter:
        module = tuner_module(self.encoder)
        assert isinstance(module, _PromptParams)
        return module.value()

    # ---------------------------------------------------------------------------------- CoOp

    def _attach_coop(self, tower: Tower, encoder: Any) -> None:
        if self.options.deep:
            raise AnybindError("deep prompts are for hf_vision / hf_audio towers, not hf_text")
        tokenizer = encoder.tokenizer
        n = self.options.n_ctx
        if getattr(tokenizer, "padding_side", "right") == "left":
            raise AnybindError(
                f"CoOp prompts need a right-padding tokenizer (tower '{tower.modality.name}')"
            )
        self._max_length = int(encoder.options.max_length) - n
        if self._max_length < 3:
            raise AnybindError(
                f"n_ctx = {n} leaves no room for text within the encoder's max_length "
                f"{encoder.options.max_length}"
            )
        table = encoder.model.get_input_embeddings().weight  # (vocab, hidden)
        ctx = torch.randn(n, table.shape[1]) * self.options.init_std
        if self.options.ctx_init:
            ids = tokenizer(self.options.ctx_init, add_special_tokens=False)["input_ids"][:n]
            ctx[: len(ids)] = table.detach()[torch.tensor(ids, dtype=torch.long)].cpu().float()
        probe = tokenizer(["x"])["input_ids"][0]
        self._offset = 1 if probe and probe[0] in set(tokenizer.all_special_ids) else 0
        register_tuner_module(encoder, _PromptParams("ctx", ctx))
        self._saved_forward = encoder.__dict__.get("forward")
        self.method = "coop"
        encoder.forward = self._coop_forward

    def _coop_forward(self, batch: list[str]) -> torch.Tensor:
        encoder: Any = self.encoder
        device = encoder.device
        inputs = tokenize(encoder.tokenizer, batch, self._max_length)
        ids = inputs["input_ids"].to(device)
        mask = inputs["attention_mask"].to(device)
        embeds = encoder.model.get_input_embeddings()(ids)  # (B, L, H)
        b, k = ids.shape[0], self._offset
        ctx = self._param().to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
        n = ctx.shape[1]
        embeds = torch.cat([embeds[:, :k], ctx, embeds[:, k:]], dim=1)
        mask = torch.cat([mask[:, :k], mask.new_ones(b, n), mask[:, k:]], dim=1)
        extra = {}
        if "token_type_ids" in inputs:
            types = inputs["token_type_ids"].to(device)
            extra["token_type_ids"] = torch.cat(
                [types[:, :k], types.new_zeros(b, n), types[:, k:]], dim=1
            )
        hidden = encoder.model(inputs_embeds=embeds, attention_mask=mask, **extra)
        hidden = hidden.last_hidden_state  # (B, L + n, H)
        if encoder.options.pooling == "mean":
            keep = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1e-9)
        else:
            pooled = hidden[:, 0]
        if encoder.options.normalize_output:
            pooled = F.normalize(pooled, dim=-1)
        return pooled

    # ----------------------------------------------------------------------------------- VPT

    def _attach_vpt(self, encoder: nn.Module) -> None:
        model = hf_model(encoder)
        found = transformer_layers(encoder)
        assert model is not None and found is not None
        _, layers = found
        hidden = int(model.config.hidden_size)
        depth = len(layers) if self.options.deep else 1
        prompts = torch.randn(depth, self.options.n_tokens, hidden) * self.options.init_std
        self._summary = _summary_tokens(model)
        register_tuner_module(encoder, _PromptParams("prompts", prompts))
        self.method = "vpt"
        self._hooks.append(model.register_forward_pre_hook(self._reset))
        for i, layer in enumerate(layers):
            self._hooks.append(
                layer.register_forward_pre_hook(_LayerHook(self, i), with_kwargs=True)
            )

    def _reset(self, module: nn.Module, args: Any) -> None:
        self._inserted = False

    def _insert(
        self, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        from_kwargs = not args
        hidden = kwargs["hidden_states"] if from_kwargs else args[0]
        prompts = self._param()
        deep = prompts.shape[0] > 1
        if self._inserted and not deep:
            return None
        p, n = self._summary, prompts.shape[1]
        tokens = prompts[index if deep else 0].to(hidden.dtype).unsqueeze(0)
        tokens = tokens.expand(hidden.shape[0], -1, -1)
        if self._inserted:  # VPT-deep: this layer's prompts replace the previous outputs
            new = torch.cat([hidden[:, :p], tokens, hidden[:, p + n :]], dim=1)
            rest_args, rest_kwargs = list(args[1:]), dict(kwargs)
        else:
            length = hidden.shape[1]
            new = torch.cat([hidden[:, :p], tokens, hidden[:, p:]], dim=1)
            rest_args = [_extend_mask(a, p, n, length) for a in args[1:]]
            rest_kwargs = {
                k: _extend_mask(v, p, n, length) if "mask" in k else v for k, v in kwargs.items()
            }
            self._inserted = True
        if from_kwargs:
            rest_kwargs["hidden_states"] = new
            return tuple(rest_args), rest_kwargs
        return (new, *rest_args), rest_kwargs


class _LayerHook:
    def __init__(self, tuner: PromptTuner, index: int):
        self.tuner = tuner
        self.index = index

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        return self.tuner._insert(self.index, args, kwargs)


def _summary_tokens(model: nn.Module) -> int:
    """How many summary tokens (CLS, distillation) lead the token sequence."""
    for m in model.modules():
        count = sum(isinstance(getattr(m, a, None), nn.Parameter) for a in _SUMMARY_TOKENS)
        if count:
            return count
    return 0


def _extend_mask(mask: Any, at: int, n: int, length: int) -> Any:
    """Make a (B, L) or (B, 1, L, L) attention mask attend to n tokens inserted at `at`."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 4) or mask.shape[-1] != length:
        return mask
    if mask.dtype == torch.bool:
        attend: float | bool = True
    elif mask.ndim == 4 and mask.is_floating_point():
        attend = 0.0  # additive mask
    else:
        attend = 1
    dims = [-1] + ([-2] if mask.ndim == 4 and mask.shape[-2] == length else [])
    for dim in dims:
        shape = list(mask.shape)
        shape[dim] = n
        fill = mask.new_full(shape, attend)
        head, tail = mask.narrow(dim, 0, at), mask.narrow(dim, at, mask.shape[dim] - at)
        mask = torch.cat([head, fill, tail], dim=dim)
    return mask


__all__ = ["PromptOptions", "PromptTuner"]
