"""The checks of a config's shared `backbone` and the towers that run it (encoders/backbone.py).
Called by `Config`'s validator; fills in each `backbone` encoder's width."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anybind.config.schema import Config


def check_backbone(config: Config) -> None:
    """The shared backbone and its towers; fills in their width."""
    users, backbone = config.backbone_modalities(), config.backbone
    if backbone is None:
        if users:
            raise ValueError(
                f"modalities.{users[0]}.encoder.type: 'backbone' needs a `backbone` section"
            )
        return
    if not users:
        raise ValueError("backbone: no modality's encoder is `backbone`")
    for m in users:
        width = config.modalities[m].encoder.get("width")
        if width is not None and width != backbone.width:
            raise ValueError(
                f"modalities.{m}.encoder.width: {width}, but backbone.width is "
                f"{backbone.width} (leave it out)"
            )
        config.modalities[m].encoder["width"] = backbone.width
    if config.base is not None and set(users) - set(config.base.modalities):
        new = sorted(set(users) - set(config.base.modalities))
        raise ValueError(
            f"modalities.{new[0]}.encoder.type: the base run's backbone stays frozen; "
            "a new modality needs an encoder of its own"
        )
    routed = backbone.ffn == "moe"
    if routed and config.optim.micro_batches > 1:
        raise ValueError("optim.micro_batches: not with a routed (moe) backbone yet")
    if config.train.parallel == "fsdp":
        raise ValueError("train.parallel: 'fsdp' shards towers, not a shared backbone")
