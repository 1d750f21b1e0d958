"""Pretrained Hugging Face audio encoders (wav2vec2, HuBERT, WavLM, AST): waveforms → (B, hidden).

Loads `AutoModel.from_pretrained(path)` (float32), `path` a local folder or a hub id. All families
take the raw waveform, so the audio modality must use `representation: waveform` at
`sample_rate: 16000` (`check` says so otherwise). Input: (B, samples) float in [-1, 1].

Two kinds of model, told apart by the config:
- Waveform models with a convolutional front end (`conv_dim` in the config: wav2vec2, HuBERT,
  WavLM, data2vec-audio, ...): each utterance is normalised to zero mean and unit variance (as
  `Wav2Vec2FeatureExtractor` does, unless the folder's preprocessor_config.json says
  `do_normalize: false`), over the whole fixed-length clip the modality delivers (its zero
  padding included; no attention mask is passed). In training mode the model applies its own
  SpecAugment-style time masking if its config enables it.
- AST (model_type "audio-spectrogram-transformer"): `ASTFeatureExtractor` turns each waveform into
  Kaldi-style log-mel filterbanks (B, max_length, num_mel_bins), padded or cut to the model's
  `max_length` frames and normalised with the AudioSet mean/std (or those of the folder's
  preprocessor_config.json). Without torchaudio installed it uses its numpy implementation
  (transformers' own approximation of Kaldi fbank). This runs on the CPU per utterance and is not
  differentiable with respect to the waveform.

Pooling "mean": the average of `last_hidden_state` over all positions; for AST these are its two
summary tokens (CLS and distillation) and all patch tokens. Output (B, config.hidden_size).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    TransformersOptions,
    apply_activation_checkpointing,
    quiet_transformers,
)
from anybind.encoders.hf_vision import read_preprocessor_config
from anybind.errors import ConfigError
from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions

SAMPLE_RATE = 16000
AST_TYPE = "audio-spectrogram-transformer"
_AST_EXTRACTOR_KEYS = ("mean", "std", "do_normalize", "padding_value")


class HFAudioOptions(TransformersOptions):
    type: Literal["hf_audio"] = "hf_audio"
    #: A local folder (config.json, weights, optionally preprocessor_config.json) or a hub id.
    path: str
    pooling: Literal["mean"] = "mean"


@ENCODERS.register("hf_audio")
class HFAudio(Encoder):
    Options = HFAudioOptions
    modalities = ("audio",)
    pretrained = True
    options: HFAudioOptions

    @classmethod
    def check(cls, options: HFAudioOptions, modality_options: ModalityOptions) -> str | None:
        if not isinstance(modality_options, AudioOptions):
            return None
        if modality_options.representation != "waveform":
            return "hf_audio needs audio.representation = 'waveform' (it takes raw audio)"
        if modality_options.sample_rate != SAMPLE_RATE:
            return (
                f"hf_audio needs audio.sample_rate = {SAMPLE_RATE} (the rate pretrained "
                f"speech/audio models expect), not {modality_options.sample_rate}"
            )
        return None

    def __init__(self, options: HFAudioOptions, modality: Modality):
        super().__init__(options, modality)
        quiet_transformers()
        from transformers import ASTFeatureExtractor, AutoConfig, AutoModel

        try:
            config = AutoConfig.from_pretrained(options.location)
        except OSError as exc:
            raise ConfigError(
                f"cannot load an audio model from '{options.location}': {exc}", key="encoder.path"
            ) from exc
        self.model_type = str(config.model_type)
        self.is_ast = self.model_type == AST_TYPE
        if not self.is_ast and not hasattr(config, "conv_dim"):
            raise ConfigError(
                f"hf_audio takes wav2vec2-style waveform models (wav2vec2, HuBERT, "
                f"WavLM, ...) and AST, not model_type '{self.model_type}'",
                key="encoder.path",
            )
        pre = read_preprocessor_config(options.location)
        self.model = AutoModel.from_pretrained(options.location, dtype=torch.float32)
        apply_activation_checkpointing(self.model, options)
        self.do_normalize = bool(pre.get("do_normalize", True))
        self.extractor: ASTFeatureExtractor | None = None
        if self.is_ast:
            kwargs: dict[str, Any] = {k: pre[k] for k in _AST_EXTRACTOR_KEYS if k in pre}
            self.extractor = ASTFeatureExtractor(
                sampling_rate=SAMPLE_RATE,
                num_mel_bins=int(config.num_mel_bins),
                max_length=int(config.max_length),
                **kwargs,
            )
        self.embed_dim = int(config.hidden_size)

    def input_values(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, samples) waveform → what the model takes: a normalised waveform or AST fbanks."""
        if batch.ndim != 2:
            raise ValueError(
                f"hf_audio takes (B, samples) waveforms, got shape "
                f"{tuple(batch.shape)}; set audio.representation = 'waveform'"
            )
        if self.extractor is not None:
            waves = [w.numpy() for w in batch.detach().to("cpu", torch.float32)]
            feats = self.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")[
                "input_values"
            ]
            return feats.to(self.device, torch.float32)  # (B, max_length, num_mel_bins)
        x = batch.to(self.device, torch.float32)
        if self.do_normalize:
            mean = x.mean(dim=1, keepdim=True)
            var = x.var(dim=1, unbiased=False, keepdim=True)
            x = (x - mean) / torch.sqrt(var + 1e-7)
        return x

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_values=self.input_values(batch)).last_hidden_state
        return hidden.mean(dim=1)
