"""The tagging models, as callers import them: the text path (:mod:`hamner.models.text`) and, so that
loading any checkpoint finds its class, HamLearning (:mod:`hamner.models.hamlearning`).

``TextTagger.from_pretrained(dir)`` returns the class the checkpoint's config describes (see
:mod:`hamner.models.registry`); importing this module registers both.
"""

from __future__ import annotations

from hamner.models.hamlearning import HamLearningTagger
from hamner.models.text import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    CharCNN,
    PostTaggingModel,
    Prediction,
    TextTagger,
    _drop_pooler,
)

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "CharCNN",
    "HamLearningTagger",
    "PostTaggingModel",
    "Prediction",
    "TextTagger",
    "_drop_pooler",
]
