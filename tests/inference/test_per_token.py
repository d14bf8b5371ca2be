"""Per-token int8 MatMuls (hamner.inference.per_token): close to fp32, each row on its own scale (an
outlier in one word does not change another word's numbers), precise errors, and the int8 rule key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import tiny_text_checkpoint  # noqa: E402
from hamner import Tagger  # noqa: E402
from hamner.errors import ConfigError  # noqa: E402
from hamner.inference.onnx import export  # noqa: E402
from hamner.inference.per_token import quantize_per_token  # noqa: E402

K, N = 48, 20


def _matmul_model(path: Path, opset: int, weight_is_input: bool = False) -> np.ndarray:
    """y = x @ W + b with x of shape (batch, words, K); returns W."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(K, N)).astype(np.float32)
    b = rng.normal(size=(N,)).astype(np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "words", K])]
    inits = [numpy_helper.from_array(b, "b")]
    if weight_is_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [K, N]))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"], name="/dense/MatMul"), helper.make_node("Add", ["xw", "b"], ["y"], name="/dense/Add")],
        "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "words", N])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return w


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("opset", [17, 18])
def test_per_token_matmul_is_close_to_fp32_and_each_row_has_its_own_scale(tmp_path: Path, opset: int) -> None:
    src, dst = tmp_path / "fp32.onnx", tmp_path / "q.onnx"
    _matmul_model(src, opset)
    quantize_per_token(src, dst, ["/dense/MatMul"])
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert "MatMulInteger" in ops and "MatMul" not in ops
    assert "W" not in {i.name for i in onnx.load(str(dst)).graph.initializer}  # the fp32 weight is gone
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, K)).astype(np.float32)
    want, got = _run(src, x), _run(dst, x)
    assert got.shape == want.shape == (3, 5, N)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    # a GELU-like outlier in one word: a batch-wide scale would coarsen every other word; here
    # the other words' results do not move at all
    spiked = x.copy()
    spiked[0, 0, 3] = 500.0
    again = _run(dst, spiked)
    np.testing.assert_array_equal(again[1:], got[1:])
    np.testing.assert_array_equal(again[0, 1:], got[0, 1:])
    # all-zero rows (padding) give the bias, not NaN
    zeros = _run(dst, np.zeros((1, 2, K), np.float32))
    np.testing.assert_allclose(zeros, _run(src, np.zeros((1, 2, K), np.float32)), atol=1e-6)


def test_per_token_names_what_it_cannot_rewrite(tmp_path: Path) -> None:
    src = tmp_path / "fp32.onnx"
    _matmul_model(src, 17)
    with pytest.raises(ValueError, match=r"no MatMul named \['/nope/MatMul'\]"):
        quantize_per_token(src, tmp_path / "q.onnx", ["/nope/MatMul"])
    _matmul_model(src, 17, weight_is_input=True)
    with pytest.raises(ValueError, match=r"MatMul /dense/MatMul: its weight W is not a constant"):
        quantize_per_token(src, tmp_path / "q.onnx", ["/dense/MatMul"])
    _matmul_model(src, 12)
    with pytest.raises(ValueError, match=r"needs opset 13 or later .* has 12"):
        quantize_per_token(src, tmp_path / "q.onnx", ["/dense/MatMul"])


def test_an_int8_rule_with_per_token_output_projections(tmp_path: Path) -> None:
    """``per_token`` patterns take the MatMuls the rule keeps out of dynamic int8; the export
    records them, keeps the rest in fp32, and tags like the fp32 export; a MatMul matching both
    ``per_token`` and ``blockwise`` is an error."""
    ckpt = tiny_text_checkpoint(tmp_path)
    fp32 = export(ckpt, tmp_path / "fp32")
    rule = {"blockwise": [], "per_token": [r"/encoder/.*/output/dense/"]}
    out = export(ckpt, tmp_path / "pt", int8=True, int8_rule=rule)
    graph = onnx.load(str(out / "model.onnx")).graph
    rewritten = sorted({re.sub(r"_per_token/.*", "", n.name) for n in graph.node if n.op_type == "MatMulInteger" and "_per_token/" in n.name})
    assert rewritten and all(re.search(r"^/encoder/.*/output/dense/MatMul$", n) for n in rewritten)
    assert not [n for n in graph.node if n.op_type == "MatMulNBits"]
    meta = json.loads((out / "onnx_export.json").read_text())["int8_rule"]
    assert meta["per_token"] == rule["per_token"] and meta["kept_fp32"] == ["/emission/MatMul"]
    texts = ["Obama visited Paris and Berlin", "apple and google in london", "@nba #paris http://t.co/x"] * 10
    want = Tagger.from_pretrained(fp32).tag_many(texts)
    got = Tagger.from_pretrained(out).tag_many(texts)
    pairs = [(a, b) for x, y in zip(want, got, strict=True) for a, b in zip(x.tags, y.tags, strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= 0.8
    with pytest.raises(ConfigError, match=r"match both 'blockwise' and 'per_token'"):
        export(ckpt, tmp_path / "both", int8=True, int8_rule={"blockwise": [r"/output/dense/"], "per_token": [r"/encoder/"]})


def test_a_hamlearning_export_takes_per_token_output_projections_when_asked(tmp_path: Path) -> None:
    """HamLearning keeps INT8_DEFAULT by default; a rule with ``per_token`` rewrites its encoder's
    output projections too, and it tags posts with and without images like its fp32 export."""
    from synthetic import tiny_hamlearning_checkpoint

    setup = tiny_hamlearning_checkpoint(tmp_path)
    fp32 = export(setup["ckpt"], tmp_path / "fp32")
    out = export(setup["ckpt"], tmp_path / "pt", int8=True, int8_rule={"per_token": [r"/encoder/.*/output/dense/"]})
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [n for n in graph.node if n.op_type == "MatMulInteger" and "/output/dense/MatMul_per_token/" in n.name]
    texts = ["stop sign by the red square", "one blue clock", "Obama in Paris"] * 6
    images = [setup["image"] if i % 2 else None for i in range(len(texts))]
    want = Tagger.from_pretrained(fp32).tag_many(texts, images)
    got = Tagger.from_pretrained(out).tag_many(texts, images)
    pairs = [(a, b) for x, y in zip(want, got, strict=True) for a, b in zip(x.tags, y.tags, strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= 0.8
    assert all(g.relevance is not None for g in got)
