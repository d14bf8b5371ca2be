from __future__ import annotations

import subprocess
import sys


def test_importing_hamner_is_light() -> None:
    code = "import sys, hamner; print(sorted(m for m in ('torch', 'transformers', 'cv2', 'matplotlib', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hamner.cli", "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("hamner ")
