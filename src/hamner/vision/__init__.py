"""Images to visual features: loading, backbones, detectors, region pooling, geometry and the feature cache."""

from __future__ import annotations


def set_threads(n: int | None) -> None:
    """Use ``n`` threads in torch and (if it is installed) OpenCV; ``None`` leaves the defaults (for
    tagging: :mod:`hamner.threads`, one per usable CPU and fewer while other processes keep them busy).

    A process setting, made by the entry points (``--threads``), never by a library object. The
    thread count can change float results in their last bits, so compare features made with
    different counts with a tolerance.
    """
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from hamner.errors import ConfigError

        raise ConfigError(f"threads must be a positive integer, got {n!r}")
    import importlib.util

    import torch

    from hamner.threads import pin

    torch.set_num_threads(n)
    pin(n)  # the tagging threads too: the governor no longer adapts them to the machine's load
    if importlib.util.find_spec("cv2") is not None:
        import cv2

        cv2.setNumThreads(n)
