"""Per-token int8 MatMuls: an ONNX graph rewrite (``hamner export --int8``'s ``per_token`` rule key).

onnxruntime's dynamic int8 (``DynamicQuantizeMatMul``) gives a MatMul's whole input, every word of
every post of the batch, one 8-bit scale. Where that input has outliers (the GELU output that the
feed-forward output projection reads), one word's outlier coarsens every other word's numbers and a
post's tags depend on which posts share its batch. Here each row of the input (one sub-token of one
post) gets its own scale, from its own largest absolute value, and the weights one scale per output
column: ::

    x (..., K) float -> rows (M, K) -> scale_m = max(|row_m|, eps) / 127
    q = QuantizeLinear(rows, scale, zero point 128, axis 0)                  uint8, one scale per row
    y = Cast(MatMulInteger(q, W_q, 128)) * scale_m * w_scale_n -> (..., N)  W_q int8, per column

All standard ONNX operators (opset 13 or later); onnxruntime runs ``MatMulInteger`` on its u8s8
integer GEMM, the kernel its dynamic int8 uses. A row's result depends on that row alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: below this largest absolute value a row is treated as zeros (no division by zero)
EPS = 1e-8
_PREFIX = "per_token"


def _opset(model: object) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))  # type: ignore[attr-defined]


def _nodes(p: str, x: str, outputs: list[str], c: dict[str, str], opset: int) -> list[Any]:
    """The nodes of one per-token MatMul (see the module docstring): input ``x``, initializers
    ``{p}/W_q``, ``{p}/w_scale``, ``{p}/rows_shape``, ``{p}/out_dim`` and the shared constants ``c``."""
    from onnx import TensorProto, helper

    nodes = []

    def add(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [f"{p}/{out}"], name=f"{p}/{out}", **attrs))
        return f"{p}/{out}"

    rows = add("Reshape", [x, f"{p}/rows_shape"], "rows")
    absolute = add("Abs", [rows], "abs")
    if opset >= 18:  # ReduceMax's axes became an input
        amax = add("ReduceMax", [absolute, c["axis1"]], "amax", keepdims=0)
    else:
        amax = add("ReduceMax", [absolute], "amax", axes=[1], keepdims=0)
    scale = add("Div", [add("Max", [amax, c["eps"]], "amax_eps"), c["q_max"]], "scale")
    zero_point = add("Expand", [c["zp"], add("Shape", [scale], "rows_count")], "zero_point")
    q = add("QuantizeLinear", [rows, scale, zero_point], "q", axis=0)
    acc = add("MatMulInteger", [q, f"{p}/W_q", c["zp"]], "acc")
    y = add(
        "Mul",
        [add("Cast", [acc], "acc_float", to=TensorProto.FLOAT), add("Unsqueeze", [scale, c["axis1"]], "scale_col")],
        "y_rows",
    )
    y = add("Mul", [y, f"{p}/w_scale"], "y_scaled")
    lead = add("Slice", [add("Shape", [x], "in_shape"), c["start"], c["end"]], "lead_dims")
    out_shape = add("Concat", [lead, f"{p}/out_dim"], "out_shape", axis=0)
    nodes.append(helper.make_node("Reshape", [y, out_shape], outputs, name=f"{p}/out"))
    return nodes


def quantize_per_token(src: str | Path, dst: str | Path, names: Sequence[str]) -> None:
    """Rewrite the MatMuls ``names`` of the ONNX model ``src`` as per-token int8 MatMuls (see the
    module docstring) and write it to ``dst``. Each must multiply its input by a constant 2-D weight
    (an initializer); anything else raises ValueError naming the node."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    opset = _opset(model)
    if opset < 13:
        raise ValueError(
            f"{src}: per-token int8 needs opset 13 or later (per-axis QuantizeLinear), the graph has {opset}"
        )
    wanted = set(names)
    found = {n.name for n in graph.node if n.op_type == "MatMul"} & wanted
    if found != wanted:
        raise ValueError(f"{src}: no MatMul named {sorted(wanted - found)}")
    inits = {i.name: i for i in graph.initializer}
    consts: dict[str, np.ndarray] = {
        "eps": np.array(EPS, np.float32), "q_max": np.array(127.0, np.float32), "zp": np.array(128, np.uint8),
        "axis1": np.array([1], np.int64), "start": np.array([0], np.int64), "end": np.array([-1], np.int64),
    }  # fmt: skip
    for key, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(value, f"{_PREFIX}/{key}"))
    c = {k: f"{_PREFIX}/{k}" for k in consts}
    nodes = []
    replaced = set()
    for node in graph.node:
        if node.name not in wanted:
            nodes.append(node)
            continue
        x, w_name = node.input
        if w_name not in inits:
            raise ValueError(f"{src}: MatMul {node.name}: its weight {w_name} is not a constant (initializer)")
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        if w.ndim != 2:
            raise ValueError(f"{src}: MatMul {node.name}: its weight {w_name} has shape {w.shape}, not (in, out)")
        k, n = w.shape
        replaced.add(w_name)
        w_scale = np.maximum(np.abs(w).max(0), EPS) / 127.0
        w_q = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        p = f"{node.name}_per_token"
        parts: dict[str, np.ndarray] = {
            "W_q": w_q, "w_scale": w_scale.astype(np.float32), "rows_shape": np.array([-1, k], np.int64), "out_dim": np.array([n], np.int64),
        }  # fmt: skip
        for suffix, value in parts.items():
            graph.initializer.append(numpy_helper.from_array(value, f"{p}/{suffix}"))

        nodes += _nodes(p, x, list(node.output), c, opset)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for nd in graph.node for i in nd.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used or i.name not in replaced]  # the fp32 weights replaced go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
