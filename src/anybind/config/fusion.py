"""The `fusion` and `predictor` sections (anybind.space.fusion, anybind.space.predictor).
`anybind.config.schema` re-exports them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from anybind.config.sources import Strict
from anybind.options import Fraction, Size


class FusionConfig(Strict):
    """One joint embedding per sample from any non-empty subset of `modalities`
    (anybind.space.fusion); objectives and evaluation see it as the modality `name`."""

    type: Literal["mean", "transformer"] = "mean"
    modalities: list[str] = Field(min_length=2)
    name: str = "joint"
    layers: Size = 1
    heads: Size = 4
    #: modality dropout in training: the probability of hiding each modality from the fusion
    #: (per sample; a sample always keeps one of its modalities)
    dropout: dict[str, Fraction] = Field(default_factory=dict)
    #: `predicted`: an absent fused modality enters as its predicted embedding (needs a
    #: `predictor` of it), in training after modality dropout and at evaluation
    fill: Literal["none", "predicted"] = "none"


class PredictorConfig(Strict):
    """Networks that predict each of `modalities`' embedding from the others present
    (anybind.space.predictor); their outputs are the modalities `{m}_predicted`."""

    modalities: list[str] = Field(min_length=2)
    #: `mlp`: a residual MLP per target (sample-dependent); `shift`: a learned constant per
    #: target (only the gap between the modalities' regions: robust to a shift of domain)
    #: `codebook`: attention over `hidden` learned (key, value) prototypes; `anchor`: the class
    #: posterior against the anchor's class prompts weights learned per-class values
    kind: Literal["mlp", "shift", "codebook", "anchor"] = "mlp"
    hidden: Size = 512
    #: `anchor` only: also learn the per-class values (else only the posterior's sharpness)
    learn_values: bool = False
