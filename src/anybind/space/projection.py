"""Projection heads: encoder features (B, D_enc) → shared space (B, D)."""

from __future__ import annotations

from torch import nn

from anybind.config.schema import ProjectionConfig
from anybind.errors import ConfigError


def build_projection(config: ProjectionConfig, d_in: int, d_out: int, *, key: str) -> nn.Module:
    if config.type == "identity":
        if d_in != d_out:
            raise ConfigError(
                f"an identity projection needs the encoder width ({d_in}) to equal "
                f"space.dim ({d_out})",
                key=f"{key}.type",
            )
        return nn.Identity()
    if config.type == "linear":
        return nn.Linear(d_in, d_out)
    return nn.Sequential(
        nn.Linear(d_in, config.hidden),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden, d_out),
    )
