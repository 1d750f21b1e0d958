"""Objectives: standalone losses over a dict of modality → features, returning named terms."""

from anybind.objectives.infonce import InfoNCE, group_ids, info_nce, positive_targets

__all__ = ["InfoNCE", "group_ids", "info_nce", "positive_targets"]
