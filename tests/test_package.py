from __future__ import annotations

import subprocess
import sys


def test_importing_hamner_is_light() -> None:
    code = "import sys, hamner; print(sorted(m for m in ('torch', 'transformers', 'cv2', 'matplotlib', 'fastapi', 'ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_vision_imports_opencv_only_when_the_detector_is_built() -> None:
    code = (
        "import sys, hamner.vision.extractor, hamner.vision.cache, hamner.cli; "
        "print(sorted(m for m in ('cv2', 'fastapi', 'uvicorn', 'efficientnet_lite_pytorch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hamner.cli", "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("hamner ")
