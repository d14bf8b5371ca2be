"""Numeric precision of training and inference: fp32 weights always, bf16/fp16 autocast on top.

``auto`` means bf16 autocast on a CUDA device that supports it and fp32 everywhere else: on this
project's CPUs bf16 autocast was measured slower than fp32 (``results/bench_precision_cpu.csv``),
so it is never chosen there by default, only when asked for. fp16 needs a gradient scaler and a
CUDA device; it is refused on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from hamner.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision ``precision`` means on ``device``: fp32, bf16 or fp16 (never auto)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if precision == "auto":
        return "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and dev.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA device (got {dev}); on a CPU use bf16 or fp32")
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16: {torch.cuda.get_device_name(dev)} does not support bfloat16; use fp16 or fp32")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """Mixed precision for the forward pass: torch.autocast in bf16/fp16, nothing in fp32.

    ``precision`` must be resolved (:func:`resolve_precision`). Weights stay fp32; matrix products
    run in the low-precision dtype; the CRF always works in fp32 (it upcasts its emissions).
    """
    if precision == "fp32":
        yield
        return
    dev = torch.device(device)
    with torch.autocast(device_type=dev.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (small gradients underflow in fp16); None for fp32 and bf16."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)
