"""LoRA and IA3 through peft, on any encoder built from Linear/Conv layers.

peft has no default `target_modules` for non-language models (its table lists LMs only), so the
defaults are chosen here from the encoder's structure. Names are module paths relative to the
encoder (`tower.encoder`), e.g. `model.encoder.layer.0.attention.self.query` for hf_text.

lora (h = W0·x + (alpha/r)·B·A·x, B = 0 at start, so attaching changes nothing):
- transformer encoders (hf_text, hf_vision, hf_audio, text_bytes): every `nn.Linear` inside the
  transformer layers: attention q/k/v/out and both MLP linears (not the embeddings, the
  pooler, or wav2vec2's convolutional feature extractor). Linears owned by an
  `nn.MultiheadAttention` are skipped: its forward reads `out_proj.weight` directly, so a LoRA
  there would never run (peft issue #2200).
- other encoders (image_cnn, audio_cnn): every Conv1d/Conv2d/Linear layer.

ia3 (learned per-channel scales, initialised to 1):
- transformer encoders: the key and value projections (output scaling) and the second MLP
  linear (scaling of its input, the MLP activations: `feedforward_modules`), as in the IA3 paper.
- other encoders: every Conv2d/Linear layer (output scaling per channel).

A user `target_modules` is passed to peft as given: a list matches module names exactly or as a
`.`-suffix, a string is a regex matched in full. For ia3, `feedforward_modules` (default: none
when `target_modules` is given) must be a subset of the targets.

`merge` folds the adapter into the base weights with peft and keeps a CPU copy of the touched
base tensors, so `unmerge` and `detach` restore them bit for bit rather than by subtraction.
While merged, the adapter path is skipped (peft) and the tuner parameters get no gradient:
train unmerged. torch's `nn.TransformerEncoderLayer` has a fused inference path that reads the
linears' weights directly; while a peft tuner is attached a no-op pre-hook on each such layer
turns that path off (text_bytes), so the injected layers always run.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field
from torch import nn
from torch.utils.hooks import RemovableHandle

from anybind.errors import AnybindError
from anybind.tuners.base import TUNERS, Tuner, TunerOptions, encoder_type, transformer_layers

if TYPE_CHECKING:
    from peft.tuners.tuners_utils import BaseTuner

    from anybind.space.model import Tower

#: The adapter name inside peft; dropped from `state_dict` keys.
ADAPTER = "anybind"

_KEY_VALUE = {"key", "value", "k_proj", "v_proj", "k", "v"}
_FF_DOWN = {"fc2", "output_dense", "linear2"}


def _mha_owned(encoder: nn.Module) -> set[str]:
    """Names of the Linear layers that belong to an nn.MultiheadAttention (never called)."""
    names = set()
    for name, module in encoder.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            names |= {f"{name}.{child}" if name else child for child, _ in module.named_modules()}
    return names


def _layer_linears(encoder: nn.Module) -> list[tuple[str, nn.Linear]] | None:
    """(name, Linear) inside the transformer layers, MHA-owned ones excluded; None when the
    encoder has no transformer layers."""
    found = transformer_layers(encoder)
    if found is None:
        return None
    prefix, layers = found
    skip = _mha_owned(encoder)
    out = []
    for name, module in layers.named_modules():
        full = f"{prefix}.{name}"
        if isinstance(module, nn.Linear) and full not in skip:
            out.append((full, module))
    return out


def _all_layers(encoder: nn.Module, types: tuple[type[nn.Module], ...]) -> list[str]:
    skip = _mha_owned(encoder)
    return [n for n, m in encoder.named_modules() if isinstance(m, types) and n and n not in skip]


def _is_ff_down(name: str, module: nn.Linear) -> bool:
    """The second MLP linear of a transformer layer (intermediate → hidden)."""
    leaf = name.split(".")[-1]
    if leaf in _FF_DOWN:
        return True
    in_attention = any(part in ("attention", "self_attn", "attn") for part in name.split("."))
    return not in_attention and module.in_features > module.out_features


def default_lora_targets(encoder: nn.Module) -> list[str]:
    linears = _layer_linears(encoder)
    if linears:
        return [name for name, _ in linears]
    return _all_layers(encoder, (nn.Conv1d, nn.Conv2d, nn.Linear))


def default_ia3_targets(encoder: nn.Module) -> tuple[list[str], list[str]]:
    linears = _layer_linears(encoder)
    if linears:
        ff = [name for name, m in linears if _is_ff_down(name, m)]
        kv = [name for name, _ in linears if name.split(".")[-1] in _KEY_VALUE]
        targets = [name for name, _ in linears if name in set(ff) | set(kv)]
        return targets, ff
    return _all_layers(encoder, (nn.Conv2d, nn.Linear)), []


def _strip_peft_layers(encoder: nn.Module) -> None:
    """Put back the original module of every peft layer in the encoder (after a failed
    injection) and drop the `peft_config` attribute peft sets."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    done: list[str] = []
    for name, module in list(encoder.named_modules()):
        if not name or not isinstance(module, BaseTunerLayer):
            continue
        if any(name.startswith(f"{d}.") for d in done):
            continue
        parent, _, child = name.rpartition(".")
        setattr(
            encoder.get_submodule(parent) if parent else encoder, child, module.get_base_layer()
        )
        done.append(name)
    encoder.__dict__.pop("peft_config", None)


def _noop_pre_hook(module: nn.Module, args: Any) -> None:
    return None


class PeftTuner(Tuner):
    """Shared machinery: inject with a peft tuner model, unload on detach."""

    mergeable = True
    #: The peft prefix of this method's tensors ("lora_", "ia3_").
    prefix: ClassVar[str]

    def __init__(self, options: TunerOptions):
        super().__init__(options)
        self._peft: BaseTuner | None = None
        self._hooks: list[RemovableHandle] = []
        self._originals: dict[str, torch.Tensor] | None = None

    def _config(self, encoder: nn.Module) -> Any:
        raise NotImplementedError

    def _model_class(self) -> type[BaseTuner]:
        raise NotImplementedError

    def _attach(self, tower: Tower) -> None:
        encoder = tower.encoder
        config = self._config(encoder)
        if not config.target_modules:
            raise AnybindError(
                f"{self.name} found no Linear/Conv layers to adapt in encoder type "
                f"{encoder_type(encoder)} (tower '{tower.modality.name}'); set target_modules"
            )
        targets = config.target_modules
        shown = sorted(targets) if isinstance(targets, set | list) else repr(targets)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._peft = self._model_class()(encoder, config, ADAPTER)
        except (ValueError, TypeError, NotImplementedError) as exc:
            _strip_peft_layers(encoder)  # peft may have replaced some layers before failing
            raise AnybindError(
                f"{self.name} cannot adapt encoder type {encoder_type(encoder)} "
                f"(tower '{tower.modality.name}') with target_modules {shown}: {exc}"
            ) from exc
        self._hooks = [
            m.register_forward_pre_hook(_noop_pre_hook)
            for m in encoder.modules()
            if isinstance(m, nn.TransformerEncoderLayer)
        ]

    def _detach(self) -> None:
        assert self._peft is not None
        if self._originals is not None:
            self.unmerge()
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._peft.unload()  # puts the original module objects back, deletes model.peft_config
        self._peft = None

    def _named_parameters(self) -> dict[str, nn.Parameter]:
        out = {}
        for name, p in self.encoder.named_parameters():
            parts = name.split(".")
            if any(part.startswith(self.prefix) for part in parts) and ADAPTER in parts:
                out[".".join(part for part in parts if part != ADAPTER)] = p
        return out

    def _base_tensors(self) -> dict[str, torch.Tensor]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        out = {}
        for name, module in self.encoder.named_modules():
            if isinstance(module, BaseTunerLayer):
                base = module.get_base_layer()
                for pname, p in base._parameters.items():
                    if p is not None:
                        out[f"{name}.{pname}"] = p
        return out

    def merge(self) -> None:
        self._require_tower()
        assert self._peft is not None
        if self._originals is not None:
            raise AnybindError(f"the {self.name} tuner is already merged")
        self._originals = {
            k: p.detach().to("cpu", copy=True) for k, p in self._base_tensors().items()
        }
        with torch.no_grad():
            self._peft.merge_adapter()

    def unmerge(self) -> None:
        self._require_tower()
        assert self._peft is not None
        if self._originals is None:
            raise AnybindError(f"the {self.name} tuner is not merged")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "inaccurate unmerge" (ia3): the copy is put back
            self._peft.unmerge_adapter()
            for k, p in self._base_tensors().items():
                p.copy_(self._originals[k])
        self._originals = None

    @property
    def merged(self) -> bool:
        return self._originals is not None

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self._originals is not None:
            raise AnybindError(
                f"the {self.name} tuner is merged; unmerge it before loading weights"
            )
        super().load_state_dict(state)


def _targets(value: list[str] | str | None) -> list[str] | str | None:
    if isinstance(value, list) and not value:
        return None
    return value


class LoraOptions(TunerOptions):
    #: rank of the update B·A
    r: int = Field(8, ge=1)
    #: the update is scaled by alpha / r
    alpha: float = Field(16.0, gt=0)
    #: dropout on the LoRA branch input
    dropout: float = Field(0.0, ge=0, lt=1)
    #: module names (list: exact or `.`-suffix match; str: regex matched in full) relative to
    #: the encoder; None: every Linear of the transformer layers, else every Conv/Linear layer
    target_modules: list[str] | str | None = None


@TUNERS.register("lora")
class LoraTuner(PeftTuner):
    Options = LoraOptions
    options: LoraOptions
    prefix = "lora_"

    def _model_class(self) -> type[BaseTuner]:
        from peft import LoraModel

        return LoraModel

    def _config(self, encoder: nn.Module) -> Any:
        from peft import LoraConfig

        targets = _targets(self.options.target_modules)
        return LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=targets if targets is not None else default_lora_targets(encoder),
            bias="none",
            init_lora_weights=True,
        )


class IA3Options(TunerOptions):
    #: as for lora; None: key/value projections and the second MLP linear of each transformer
    #: layer, else every Conv2d/Linear layer
    target_modules: list[str] | str | None = None
    #: targets whose input (not output) is scaled; None: the second MLP linears by default,
    #: none when target_modules is given
    feedforward_modules: list[str] | str | None = None


@TUNERS.register("ia3")
class IA3Tuner(PeftTuner):
    Options = IA3Options
    options: IA3Options
    prefix = "ia3_"

    def _model_class(self) -> type[BaseTuner]:
        from peft import IA3Model

        return IA3Model

    def _config(self, encoder: nn.Module) -> Any:
        from peft import IA3Config

        targets = _targets(self.options.target_modules)
        ff = _targets(self.options.feedforward_modules)
        if targets is None:
            default_targets, default_ff = default_ia3_targets(encoder)
            targets = default_targets
            ff = ff if ff is not None else default_ff
        if ff is None:
            ff = []
        if isinstance(targets, list) and isinstance(ff, list):
            outside = [f for f in ff if not _matches_any(f, targets)]
            if outside:
                raise AnybindError(
                    f"ia3 feedforward_modules {outside} are not among target_modules {targets}"
                )
        return IA3Config(target_modules=targets, feedforward_modules=ff, init_ia3_weights=True)


def _matches_any(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith(f".{t}") or t.endswith(f".{name}") for t in targets)


__all__ = [
    "IA3Options",
    "IA3Tuner",
    "LoraOptions",
    "LoraTuner",
    "default_ia3_targets",
    "default_lora_targets",
]
