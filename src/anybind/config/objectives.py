"""The `objective` section: one config model per loss, told apart by `type`
(anybind.objectives). `anybind.config.schema` re-exports them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from anybind.config.sources import Strict
from anybind.options import Positive, Size


class _ObjectiveBase(Strict):
    #: Which samples in a batch count as positives of each other besides the pair itself.
    positives: Literal["label", "caption", "label_or_caption", "none"] = "label_or_caption"


class _PairwiseObjective(_ObjectiveBase):
    #: "all": every pair of modalities; "anchor": every modality against `anchor`;
    #: or an explicit list of [a, b] pairs.
    pairs: Literal["all", "anchor"] | list[tuple[str, str]] = "all"
    anchor: str | None = None


class InfoNCEConfig(_PairwiseObjective):
    """CLIP's symmetric InfoNCE over every configured pair."""

    type: Literal["infonce"] = "infonce"
    #: one learnable temperature for the space, or one per modality pair
    scale: Literal["shared", "per_pair"] = "shared"
    #: compute the loss in tiles, never holding the N×N logits (exact)
    tiled: bool = False
    tile: Size = 1024


class SigLIPConfig(_PairwiseObjective):
    """SigLIP's pairwise sigmoid loss, with its own learnable scale and bias."""

    type: Literal["siglip"]
    init_scale: Positive = 10.0
    init_bias: float = -10.0
    tiled: bool = False
    tile: Size = 1024


class CWCLConfig(_PairwiseObjective):
    """CWCL: soft targets from similarity within a frozen anchor modality."""

    type: Literal["cwcl"]
    anchor: str  # type: ignore[assignment]  # required here
    pairs: Literal["all", "anchor"] | list[tuple[str, str]] = "anchor"
    scale: Literal["shared", "per_pair"] = "shared"


class SymileConfig(_ObjectiveBase):
    """Symile's higher-order loss over one tuple of modalities."""

    type: Literal["symile"]
    #: the modalities of the tuple (default: all configured ones)
    modalities: list[str] | None = None
    negatives: Literal["n", "n_squared"] = "n"
    #: a sample missing a modality: masked out, or a learned stand-in embedding
    missing: Literal["mask", "learned"] = "mask"


def _objective_type(value: Any) -> str:
    """The tag of an objective section; `type` may be left out for infonce."""
    if isinstance(value, dict):
        return str(value.get("type", "infonce"))
    return str(getattr(value, "type", "infonce"))


#: Which loss aligns the modalities (`objective.type`); see docs/configuration.md for each.
ObjectiveConfig = Annotated[
    Annotated[InfoNCEConfig, Tag("infonce")]
    | Annotated[SigLIPConfig, Tag("siglip")]
    | Annotated[CWCLConfig, Tag("cwcl")]
    | Annotated[SymileConfig, Tag("symile")],
    Discriminator(
        _objective_type,
        custom_error_type="objective_type",
        custom_error_message="objective.type: unknown objective (known: infonce, siglip, "
        "cwcl, symile)",
    ),
]
