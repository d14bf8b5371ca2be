"""hamner: multimodal named entity recognition for social media posts (HamLearning)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tagger", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: importing hamner does not import torch or transformers
    if name == "Tagger":
        from hamner.inference.tagger import Tagger

        return Tagger
    raise AttributeError(name)
