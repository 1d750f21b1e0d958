"""Pure functions over embeddings: zero-shot classification, retrieval, geometry."""

from anybind.evaluate.geometry import alignment, modality_gap, uniformity
from anybind.evaluate.retrieval import recall_at_k
from anybind.evaluate.zero_shot import zero_shot

__all__ = ["alignment", "modality_gap", "recall_at_k", "uniformity", "zero_shot"]
