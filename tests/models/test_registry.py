"""The choice of model class for a checkpoint has one home (hamner.models.registry), and the module
callers import (hamner.models.tagger) registers every class."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hamner.models.config import TaggerConfig
from hamner.models.hamlearning import HamLearningTagger
from hamner.models.registry import model_class, register
from hamner.models.tagger import TextTagger


def test_the_config_chooses_the_class() -> None:
    assert model_class(TaggerConfig()) is TextTagger
    assert model_class(TaggerConfig(use_semantic=True)) is HamLearningTagger
    assert TextTagger.class_for(TaggerConfig(use_global=True)) is HamLearningTagger  # the old spelling still works


def test_a_second_class_for_a_kind_is_refused() -> None:
    class Other(TextTagger):
        pass

    with pytest.raises(ValueError, match="already read by hamner.models.text.TextTagger"):
        register("text")(Other)
    with pytest.raises(ValueError, match="kind must be one of"):
        register("video")


def test_importing_the_tagger_module_registers_both_classes() -> None:
    """In a fresh interpreter: the text module alone knows no multimodal class and says which module
    to import; hamner.models.tagger loads both."""
    code = (
        "from hamner.errors import ConfigError\n"
        "from hamner.models.config import TaggerConfig\n"
        "from hamner.models.text import TextTagger\n"
        "try:\n"
        "    TextTagger.class_for(TaggerConfig(use_semantic=True))\n"
        "except ConfigError as e:\n"
        "    print('refused:', e)\n"
        "import hamner.models.tagger\n"
        "print(TextTagger.class_for(TaggerConfig(use_semantic=True)).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "refused: no model class for multimodal checkpoints is loaded: import hamner.models.tagger" in out
    assert out.strip().endswith("HamLearningTagger")

