"""Version ranges: declared in pyproject.toml, checked at run time, never pinned in the metadata."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from hamner import requirements
from hamner.requirements import MINIMUM, RequirementError, check_requirements

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]


def test_metadata_names_ranges_not_pins_and_no_upper_python_bound() -> None:
    deps = PYPROJECT["dependencies"] + sum(PYPROJECT["optional-dependencies"].values(), [])
    assert not [d for d in deps if "==" in d or "<" in d]
    assert PYPROJECT["requires-python"] == ">=3.11"


def test_pyproject_lower_bounds_are_the_ones_the_code_checks() -> None:
    declared = {}
    for dep in PYPROJECT["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep)
        if m:
            declared[m.group(1)] = m.group(2)
    assert {k: v for k, v in declared.items() if k in MINIMUM} == {k: v for k, (v, _) in MINIMUM.items()}


def test_an_old_or_missing_library_is_named_with_the_version_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def fake(name: str) -> str:
        if name == "torch":
            return "2.1.2+cu118"
        if name == "pytorch-crf":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(requirements.importlib.metadata, "version", fake)
    check_requirements.cache_clear()
    try:
        with pytest.raises(RequirementError) as err:
            check_requirements()
        msg = str(err.value)
        assert "torch 2.1.2+cu118 is installed, hamner needs torch>=2.4" in msg
        assert "pytorch-crf is not installed (hamner needs pytorch-crf>=0.7.2" in msg
        assert "transformers" not in msg.split(". Upgrade")[0]
    finally:
        check_requirements.cache_clear()
    monkeypatch.undo()
    check_requirements()  # the real environment passes
