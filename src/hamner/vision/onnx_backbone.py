"""An image backbone exported to ONNX and run on ONNX Runtime, behind the :class:`Backbone` interface.

The graph is the PyTorch backbone's ``forward`` (feature grid and class logits) with a dynamic
batch axis. Its identity is the PyTorch backbone's (the same weights file and preprocessing) plus
``runtime: onnxruntime``: features made with it get another fingerprint than the PyTorch ones, so a
model trained on a PyTorch-made cache never silently reads them (the numbers differ in the last
float bits). onnxruntime loads only when this module's classes are used (the ``onnx`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hamner.errors import ConfigError
from hamner.vision.backbones import Backbone, BackboneOutput, build_backbone


def export_backbone(
    path: str | Path, name: str = "efficientnet-lite0", weights: str | None = None, options: dict[str, Any] | None = None, opset: int = 17
) -> float:
    """Write backbone ``name``'s forward pass (grid and logits) as ONNX to ``path``; returns the
    largest difference from PyTorch's grid and logits on a random image (checked: at most 1e-3)."""
    import onnxruntime

    backbone = build_backbone(name, weights, options)
    h, w = backbone.preprocessing.size

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
            out = self.backbone(images)
            if out.logits is None:
                raise ConfigError(f"backbone {name!r} has no classifier; export covers backbones with class logits")
            return out.grid, out.logits

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            Graph().eval(), (torch.zeros(1, 3, h, w),), str(out), input_names=["images"], output_names=["grid", "logits"],
            dynamic_axes={"images": {0: "batch"}, "grid": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
            dynamo=False,
        )  # fmt: skip
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        want = backbone.eval()(x)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    grid, logits = session.run(None, {"images": x.numpy()})
    worst = max(float(np.abs(grid - want.grid.numpy()).max()), float(np.abs(logits - want.logits.numpy()).max()))  # type: ignore[union-attr]
    if worst > 1e-3:
        raise RuntimeError(f"the exported backbone {name!r} differs from PyTorch by {worst:.2e} on a random image")
    return worst


class OnnxBackbone(Backbone):
    """``backbone``'s exported graph on ONNX Runtime (the PyTorch module gives names and preprocessing)."""

    def __init__(self, backbone: Backbone, onnx_path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError(f"an ONNX backbone needs onnxruntime: pip install -e '.[onnx]' ({exc})") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.source = backbone.identity()
        self.name = backbone.name
        self.out_channels = backbone.out_channels
        self.class_names = backbone.class_names
        self.preprocessing = backbone.preprocessing

    def forward(self, images: Tensor) -> BackboneOutput:
        grid, logits = self.session.run(None, {"images": np.ascontiguousarray(images.detach().float().numpy())})
        return BackboneOutput(grid=torch.from_numpy(grid), logits=torch.from_numpy(logits))

    def identity(self) -> dict[str, Any]:
        return {**self.source, "runtime": "onnxruntime"}
