"""What a command prints to the terminal: hamner's own lines and other libraries' errors; other
libraries' INFO and WARNING records and Python warnings only with ``hamner --verbose``."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, warnings
from hamner.cli import _setup_logging
_setup_logging({verbose})
logging.info("library info on the root logger")  # what ONNX Runtime's quantiser does
logging.getLogger("onnxruntime").warning("library warning")
logging.getLogger("somelibrary").error("library error")
logging.getLogger("hamner.inference.onnx").info("own info")
logging.getLogger("hamner").warning("own warning")
logging.getLogger("hamner.x").debug("own debug")
warnings.warn("a library's UserWarning", UserWarning)
"""
OWN = ("own info", "own warning", "library error")
THEIRS = ("library info on the root logger", "library warning", "a library's UserWarning")


def _stderr(verbose: bool) -> str:
    run = subprocess.run([sys.executable, "-c", SCRIPT.format(verbose=verbose)], capture_output=True, text=True, check=True)
    return run.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_other_libraries_info_and_warnings_show_only_with_verbose(verbose: bool) -> None:
    err = _stderr(verbose)
    for line in OWN:
        assert line in err
    for line in THEIRS:
        assert (line in err) == verbose, (line, err)
    assert ("own debug" in err) == verbose
