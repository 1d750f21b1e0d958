"""Houlsby-style bottleneck adapters: y = x + up(act(down(x))) after chosen encoder blocks.

`up` is zero-initialised, so attaching changes nothing until the adapters are trained. Each
adapter runs in a forward hook on its block (the block itself is not replaced, so base state-dict
names stay put), on the block's output, or on the first element when the block returns a tuple.

The bottleneck width is `max(1, width // reduction)`, where `width` is the output size of the
last Linear/Conv layer of the block; the adapter's kind follows that layer:
- Conv2d / Conv1d → 1×1 convolutions over channels (dim 1), for (B, C, H, W) / (B, C, T) maps;
- Linear → Linear layers over the last dimension, for (B, L, hidden) token sequences.

Default `targets` (module names relative to the encoder):
- transformer encoders (hf_text, hf_vision, hf_audio, text_bytes): every layer of the
  transformer stack (e.g. `model.encoder.layer.0`, `model.encoder.layer.1`, ...);
- convolutional encoders (image_cnn, audio_cnn): every Conv-BN-GELU block, i.e. each
  `nn.Sequential` whose children include a convolution and no further Sequential (for audio_cnn
  the flat stride-2 stem is not a block and gets no adapter);
- encoders without either (window_pool): every such Sequential of Linear layers.

Adapters are not mergeable (a nonlinear branch cannot be folded into the base weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.hooks import RemovableHandle

from anybind.errors import AnybindError
from anybind.tuners.base import (
    TUNER_MODULE,
    TUNERS,
    Tuner,
    TunerOptions,
    register_tuner_module,
    remove_tuner_module,
    transformer_layers,
    tuner_module,
)

if TYPE_CHECKING:
    from anybind.space.model import Tower

Kind = Literal["linear", "conv1d", "conv2d"]


class AdapterOptions(TunerOptions):
    #: bottleneck width = block width // reduction (at least 1)
    reduction: int = Field(4, ge=1)
    #: module names (relative to the encoder) after which adapters go; None: every transformer
    #: layer, else every convolutional block
    targets: list[str] | None = None


class Bottleneck(nn.Module):
    def __init__(self, width: int, hidden: int, kind: Kind):
        super().__init__()
        self.kind = kind
        down: nn.Module
        up: nn.Module
        if kind == "linear":
            down, up = nn.Linear(width, hidden), nn.Linear(hidden, width)
        elif kind == "conv1d":
            down, up = nn.Conv1d(width, hidden, 1), nn.Conv1d(hidden, width, 1)
        else:
            down, up = nn.Conv2d(width, hidden, 1), nn.Conv2d(hidden, width, 1)
        self.down = down
        self.act = nn.GELU()
        self.up = up
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def default_adapter_targets(encoder: nn.Module) -> list[str]:
    found = transformer_layers(encoder)
    if found is not None:
        prefix, layers = found
        return [f"{prefix}.{i}" for i in range(len(layers))]
    blocks: dict[str, list[str]] = {"conv": [], "linear": []}
    for name, m in encoder.named_modules():
        if not name or name.split(".")[0] == TUNER_MODULE or not isinstance(m, nn.Sequential):
            continue
        if any(isinstance(c, nn.Sequential) for c in m.children()):
            continue
        if any(isinstance(c, (nn.Conv1d, nn.Conv2d)) for c in m.children()):
            blocks["conv"].append(name)
        elif any(isinstance(c, nn.Linear) for c in m.children()):
            blocks["linear"].append(name)
    return blocks["conv"] or blocks["linear"]


def block_width(module: nn.Module) -> tuple[int, Kind] | None:
    """(output width, adapter kind) from the last Linear/Conv1d/Conv2d layer of a block."""
    last: nn.Module | None = None
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            last = m
    if isinstance(last, nn.Linear):
        return last.out_features, "linear"
    if isinstance(last, nn.Conv1d):
        return last.out_channels, "conv1d"
    if isinstance(last, nn.Conv2d):
        return last.out_channels, "conv2d"
    return None


def _module_key(target: str) -> str:
    return target.replace(".", "-")


@TUNERS.register("adapter")
class BottleneckAdapter(Tuner):
    Options = AdapterOptions
    options: AdapterOptions

    def __init__(self, options: AdapterOptions):
        super().__init__(options)
        self._targets: list[str] = []
        self._hooks: list[RemovableHandle] = []

    def _attach(self, tower: Tower) -> None:
        encoder = tower.encoder
        targets = list(self.options.targets or default_adapter_targets(encoder))
        if not targets:
            raise self._unsupported(
                tower,
                "adapter found no transformer layers or convolutional blocks to follow; "
                "set targets",
            )
        if len(set(targets)) != len(targets):
            raise AnybindError(f"adapter targets are repeated: {targets}")
        adapters = {}
        for target in targets:
            try:
                block = encoder.get_submodule(target)
            except AttributeError:
                raise AnybindError(
                    f"adapter target '{target}' is not a module of the encoder "
                    f"(tower '{tower.modality.name}')"
                ) from None
            shape = block_width(block)
            if shape is None:
                raise AnybindError(
                    f"adapter target '{target}' ({type(block).__name__}) holds no "
                    "Linear/Conv layer to size the adapter from"
                )
            width, kind = shape
            adapters[_module_key(target)] = Bottleneck(
                width, max(1, width // self.options.reduction), kind
            )
        register_tuner_module(encoder, nn.ModuleDict(adapters))
        self._targets = targets
        container = tuner_module(encoder)
        for target in targets:
            adapter = container[_module_key(target)]
            hook = _make_hook(target, adapter)
            self._hooks.append(encoder.get_submodule(target).register_forward_hook(hook))

    def _detach(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        remove_tuner_module(self.encoder)
        self._targets = []

    def _named_parameters(self) -> dict[str, nn.Parameter]:
        container = tuner_module(self.encoder)
        out = {}
        for target in self._targets:
            for pname, p in container[_module_key(target)].named_parameters():
                out[f"{target}.{pname}"] = p
        return out


def _make_hook(target: str, adapter: nn.Module) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return adapter(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (adapter(output[0]), *output[1:])
        raise AnybindError(
            f"adapter after '{target}': cannot adapt an output of type {type(output).__name__}"
        )

    return hook


__all__ = ["AdapterOptions", "Bottleneck", "BottleneckAdapter", "default_adapter_targets"]
