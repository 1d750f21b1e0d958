"""The shared embedding space: towers, projection heads, logit scale; save/load."""

from anybind.space.io import load_space, save_space
from anybind.space.model import Space, Tower

__all__ = ["Space", "Tower", "load_space", "save_space"]
