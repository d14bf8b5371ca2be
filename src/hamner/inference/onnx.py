"""The ONNX Runtime backend: a checkpoint exported to ONNX, behind the same interface as TextTagger.

``hamner export --model DIR --out DIR [--int8]`` writes everything up to the emissions (encoder,
first-sub-token word pooling, shape, char and entity-type channels and, for HamLearning, the visual projections,
relevance, level weights, iterations and gate) as one ONNX graph with dynamic batch and length axes;
beside it the checkpoint's own config, encoder config and tokenizer, and ``onnx_export.json`` with
the CRF's transitions (Viterbi decoding runs in numpy here) and how the graph was made.

:class:`OnnxTagger` is what :class:`hamner.inference.tagger.Tagger` gets for such a directory: it
has the attributes and methods the Tagger, ``hamner evaluate`` and the server use of a TextTagger
(``config``, ``word_encoder``, ``max_subtokens``, ``encode_post``, ``collate``, ``plan_windows``,
``run`` returning :class:`Prediction` objects), reusing their code for tokenisation, collation and
long-post windows, so callers do not change (the pattern of Hugging Face optimum's ORTModel).

The graph always holds every visual level the model has: a batch in which no post has an image
gets empty (masked) levels instead of none, which gives the text path's emissions exactly as the
PyTorch model does (its relevance is 0, so the gate passes the text-path vector through).
Word-to-image attention maps are not exported (``Prediction.attention`` is empty).

Importing this module does not import onnxruntime or onnx: they load when a model is exported or
opened (the ``onnx`` extra).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hamner.data.encoding import EncodedPost, WordEncoder, collate
from hamner.errors import ConfigError
from hamner.hashing import file_sha256
from hamner.models.config import TaggerConfig
from hamner.models.tagger import CONFIG_FILE, FORMAT_VERSION, Prediction, TextTagger

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
BACKBONE_FILE = "backbone.onnx"  # a multimodal model's image backbone (the detector stays on OpenCV)
META_FILE = "onnx_export.json"  # its presence marks an exported directory
EXPORT_FORMAT = 1
OPSET = 17

# The int8 rule, chosen on the text-only model's Twitter-2017 dev F1 before test was looked at
# (scripts/int8_dev_choice.py, results/int8_dev.csv; docs/export.md): dynamic int8 with per-channel
# weight scales on the encoder's MatMuls, except the output projections (``output/dense``: the
# feed-forward one's input is the GELU output, whose outliers ruin a batch-wide 8-bit scale);
# everything after the encoder (char CNN, fusion, gate, emission) stays fp32. For HamLearning, every
# MatMul per channel kept dev F1 and ran 1.6 times as fast, but lost 0.73 and 0.62 test F1 on the
# two datasets (results/int8_dev_hamlearning.csv, results/onnx_f1.csv): not adopted.
# Rechecked on 7 Dec with dev F1 averaged over batch sizes (dynamic int8 depends on a batch's posts):
# every encoder MatMul per channel (1.3x faster) passed dev but lost 0.38 test F1 on one of four
# text-only checkpoints (results/int8_dev.csv, results/int8_test_check.csv), and on 8 Dec every
# MatMul per channel lost 0.39 (results/int8_test_check_all_per_channel.csv).
INT8_DEFAULT = {"per_channel": True, "include": [r"/encoder/"], "exclude": [r"/output/dense/"]}
# A text-only model's rule: the same, with the output projections as per-token int8 MatMuls (each
# sub-token's input on its own 8-bit scale, weights per output column: hamner.inference.per_token),
# since 8 Dec (second session). Chosen on dev by scripts/int8_dev_choice.py: dev F1 85.10 against
# fp32's 84.72, its two-thread session 483 posts/s against the blockwise rule's 454
# (results/int8_dev_per_token.csv); test F1 minus PyTorch's on four checkpoints +0.16, +0.21, +0.32,
# +0.05, the check stated before it ran (results/int8_test_check_per_token.csv). The rule it replaced
# ran them as 8-bit blockwise MatMuls (``blockwise``, still available: -0.06, +0.31, +0.45, +0.03,
# results/int8_test_check_blockwise.csv), whose kernel costs about 2.3 times as much per FLOP here
# (results/onnx_op_profile.csv). Not checked on a HamLearning model (none was on the machine), whose
# export keeps INT8_DEFAULT.
INT8_TEXT_DEFAULT = {**INT8_DEFAULT, "per_token": [r"/encoder/.*/output/dense/"]}
#: rows of a weight block of the ``blockwise`` MatMuls of an int8 rule (see quantize_int8)
BLOCK_SIZE = 256
#: the first onnxruntime that runs 8-bit MatMulNBits on the CPU (checked with older releases)
BLOCKWISE_MIN_ORT = "1.22"
#: onnxruntime graph fusions OnnxTagger's sessions leave out. SkipLayerNormFusion: on int8 exports
#: its fused kernel is slower than the LayerNormalization and Add it replaces (without it, sessions
#: over 2,500 unseen posts run 1.11 times as fast on one thread and 1.06-1.07 on two, blockwise and
#: per-token int8; fp32 exports are not fused by it, their output is bit for bit the same:
#: results/onnx_fusions.csv, onnxruntime 1.32)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)



def cpu_session(
    path: str | Path, threads: int, spinning: bool = True, disabled: Sequence[str] = DISABLED_OPTIMIZERS,
    profile_prefix: str | Path | None = None,
) -> Any:  # fmt: skip
    """An onnxruntime CPU session as OnnxTagger makes it: every graph optimization but ``disabled``
    (:data:`DISABLED_OPTIMIZERS`), ``threads`` intra-op threads, threads that sleep after a run with
    ``spinning=False``; ONNX Runtime's profiler on with ``profile_prefix``."""
    ort = _require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))

def exported_backbone(directory: str | Path) -> Path | None:
    """The ONNX image backbone of an exported multimodal model, or None (none exported, or not an
    exported model)."""
    d = Path(directory)
    return _backbone_in(d, json.loads((d / META_FILE).read_text())) if is_exported(d) else None


def _backbone_in(directory: Path, meta: dict[str, Any]) -> Path | None:
    info = meta.get("backbone")
    return directory / info["file"] if info else None


def is_exported(directory: str | Path) -> bool:
    """True for a ``hamner export`` directory (an ONNX model beside the checkpoint's config)."""
    d = Path(directory)
    return (d / META_FILE).is_file() and (d / ONNX_FILE).is_file()


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(f"an exported (ONNX) model needs onnxruntime: pip install -e '.[onnx]' ({exc})") from None
    return onnxruntime


# ----- the graph's inputs ---------------------------------------------------------------------------
def graph_inputs(config: TaggerConfig) -> list[str]:
    """The batch keys the exported graph reads, for a model of ``config`` (fixed order)."""
    c = config
    names = ["input_ids", "attention_mask", "first_sub", "word_mask"]
    if c.use_shape:
        names.append("shape_ids")
    if c.use_chars:
        names.append("char_ids")
    if c.use_entity_types:
        names.append("entity_ids")
    if c.multimodal and c.semantic_segment:
        names.append("token_type_ids")
    if c.fuses and c.semantic_sequence:
        names += ["sem_positions", "sem_mask"]
        if c.semantic_mode == "sequence":
            names += ["sem_input_ids", "sem_attention_mask"]
    if c.fuses and c.use_global:
        names += ["grid", "grid_mask"]
    if c.fuses and c.use_objects:
        names += ["objects", "boxes", "geometry", "direction", "object_mask"]
    return names


DYNAMIC_AXES: dict[str, dict[int, str]] = {
    "input_ids": {0: "batch", 1: "subtokens"},
    "attention_mask": {0: "batch", 1: "subtokens"},
    "token_type_ids": {0: "batch", 1: "subtokens"},
    "first_sub": {0: "batch", 1: "words"},
    "word_mask": {0: "batch", 1: "words"},
    "shape_ids": {0: "batch", 1: "words"},
    "char_ids": {0: "batch", 1: "words", 2: "bytes"},
    "entity_ids": {0: "batch", 1: "words"},
    "sem_positions": {0: "batch", 1: "image_subtokens"},
    "sem_mask": {0: "batch", 1: "image_subtokens"},
    "sem_input_ids": {0: "batch", 1: "image_input"},
    "sem_attention_mask": {0: "batch", 1: "image_input"},
    "grid": {0: "batch", 2: "grid_h", 3: "grid_w"},
    "grid_mask": {0: "batch"},
    "objects": {0: "batch", 1: "objects"},
    "boxes": {0: "batch", 1: "objects"},
    "geometry": {0: "batch", 1: "objects", 2: "objects_"},
    "direction": {0: "batch", 1: "objects", 2: "objects_"},
    "object_mask": {0: "batch", 1: "objects"},
    "emissions": {0: "batch", 1: "words"},
    "relevance": {0: "batch"},
    "level_weights": {0: "batch"},
}


def fill_missing(batch: dict[str, torch.Tensor], names: Sequence[str], config: TaggerConfig, cls_sep: tuple[int, int]) -> dict[str, torch.Tensor]:
    """``batch`` with every graph input present: a level no post of the batch has becomes one empty
    (masked) position per post, which the model reads as no input at all. Finite placeholders (not
    masked-out encoder rows) so that nothing in the graph can turn into NaN."""
    b, t = batch["input_ids"].shape
    out = dict(batch)
    c = config
    if "token_type_ids" in names and "token_type_ids" not in out:
        out["token_type_ids"] = torch.zeros(b, t, dtype=torch.long)
    if "sem_positions" in names and "sem_positions" not in out:
        out["sem_positions"] = torch.zeros(b, 1, dtype=torch.long)
        out["sem_mask"] = torch.zeros(b, 1, dtype=torch.bool)
    if "sem_input_ids" in names and "sem_input_ids" not in out:
        out["sem_input_ids"] = torch.tensor([list(cls_sep)] * b, dtype=torch.long)
        out["sem_attention_mask"] = torch.ones(b, 2, dtype=torch.long)
    if "grid" in names and "grid" not in out:
        out["grid"] = torch.zeros(b, c.visual_channels, 1, 1)
        out["grid_mask"] = torch.zeros(b, dtype=torch.bool)
    if "objects" in names and "objects" not in out:
        from hamner.models.hamlearning import BOX_FEATURES, GEOMETRY_FEATURES

        out["objects"] = torch.zeros(b, 1, c.visual_channels)
        out["boxes"] = torch.zeros(b, 1, BOX_FEATURES)
        out["geometry"] = torch.zeros(b, 1, 1, GEOMETRY_FEATURES)
        out["direction"] = torch.zeros(b, 1, 1, dtype=torch.long)
        out["object_mask"] = torch.zeros(b, 1, dtype=torch.bool)
    return out


def _traceable_cross_block(block: Any, query: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`hamner.models.hamlearning.CrossBlock.forward` (eval mode) with the attention written out:
    ``nn.MultiheadAttention``'s functional form turns batch x heads into a constant when traced, so
    the exported graph would only take the example's batch size. Same weights, same masking (-inf on
    padded keys); the head-averaged weights are not computed (not exported)."""
    from hamner.models.hamlearning import keys_to_keep

    mha = block.attn
    d, heads = mha.embed_dim, mha.num_heads
    keep = keys_to_keep(memory_mask)
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    q = torch.nn.functional.linear(query, w[:d], bias[:d]).unflatten(-1, (heads, d // heads)).transpose(1, 2)
    k = torch.nn.functional.linear(memory, w[d : 2 * d], bias[d : 2 * d]).unflatten(-1, (heads, d // heads)).transpose(1, 2)
    v = torch.nn.functional.linear(memory, w[2 * d :], bias[2 * d :]).unflatten(-1, (heads, d // heads)).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / float(np.sqrt(d // heads))  # shape: (batch, heads, queries, keys)
    attn = scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(-1)
    ctx = mha.out_proj(torch.flatten((attn @ v).transpose(1, 2), 2))  # shape: (batch, queries, d)
    x = block.norm1(query + ctx)
    x = block.norm2(x + block.ffn(x))
    return x, attn.mean(1)


class _EmissionsGraph(torch.nn.Module):
    """The model up to its emissions, with positional tensor inputs (what the exporter traces)."""

    def __init__(self, model: TextTagger, names: Sequence[str]) -> None:
        super().__init__()
        from hamner.models.hamlearning import CrossBlock

        self.model = model
        self.names = list(names)
        for module in model.modules():
            if isinstance(module, CrossBlock):
                module.forward = types.MethodType(_traceable_cross_block, module)  # type: ignore[method-assign]

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = self.model.fuse(dict(zip(self.names, tensors, strict=True)))
        if parts["relevance"] is None:
            return (parts["emissions"],)
        return parts["emissions"], parts["relevance"], parts["level_weights"]


def _example_batch(model: TextTagger) -> dict[str, torch.Tensor]:
    """Two posts of different lengths with every input the graph reads (values only need to be valid)."""
    c = model.config
    tok = model.tokenizer
    cls_id, sep_id = tok.cls_token_id or 0, tok.sep_token_id or 0
    enc = model.word_encoder
    ents = ([1, 3, 4], [5, 1])  # entity-type classes given (O, B-/I-PERSON, B-NORP): spaCy is not needed to export
    posts = [enc.encode(["a", "b", "c"], entity_ids=ents[0]), enc.encode(["a", "b"], entity_ids=ents[1])]
    if c.semantic_segment:
        posts = [enc.encode(["a", "b", "c"], None, ["a", "b"], 8, ents[0]), enc.encode(["a", "b"], None, ["a"], 8, ents[1])]
    batch = collate(posts, tok.pad_token_id or 0)
    batch.pop("tags")
    names = graph_inputs(c)
    if c.multimodal:
        b = 2
        if "sem_positions" in names:
            pos = batch.get("sem_positions", torch.ones(b, 2, dtype=torch.long))
            batch["sem_positions"], batch["sem_mask"] = pos, torch.ones_like(pos, dtype=torch.bool)
        if "sem_input_ids" in names:
            batch["sem_input_ids"] = torch.tensor([[cls_id, 5, sep_id], [cls_id, 5, sep_id]])
            batch["sem_attention_mask"] = torch.ones(b, 3, dtype=torch.long)
        if "grid" in names:
            batch["grid"], batch["grid_mask"] = torch.randn(b, c.visual_channels, 2, 3), torch.tensor([True, False])
        if "objects" in names:
            k = 3
            batch.update(
                objects=torch.randn(b, k, c.visual_channels), boxes=torch.rand(b, k, 7), geometry=torch.randn(b, k, k, 5),
                direction=torch.zeros(b, k, k, dtype=torch.long), object_mask=torch.tensor([[True, True, False], [False, False, False]]),
            )  # fmt: skip
    return fill_missing(batch, names, c, (cls_id, sep_id))


def quantize_int8(
    src: Path, dst: Path, per_channel: bool = True, include: Sequence[str] = (), exclude: Sequence[str] = (),
    blockwise: Sequence[str] = (), block_size: int = BLOCK_SIZE, per_token: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """Dynamic int8 quantization (onnxruntime's quantizer) of the MatMuls of ``src`` whose node name
    matches a pattern of ``include`` (all when empty) and none of ``exclude``. Of the MatMuls left
    out, those matching a pattern of ``per_token`` get per-token int8 (each input row, one sub-token
    of one post, scaled on its own; weights per output column; see :mod:`hamner.inference.per_token`),
    and those matching a pattern of ``blockwise`` get 8-bit weights in blocks of ``block_size`` rows
    with int8 arithmetic (onnxruntime's ``MatMulNBits``, accuracy level 4: each input row is scaled
    per block of ``block_size`` values). Either way one outlier spoils one row (or block), not the
    batch, and what these layers give a post does not depend on the other posts of its batch. A
    MatMul matching both raises ConfigError. Returns the names of the MatMuls kept in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul"]
    constant = {i.name for i in graph.initializer}
    weighted = {n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in constant}  # not attention's scores

    def matches(name: str, patterns: Sequence[str]) -> bool:
        return any(re.search(p, name) for p in patterns)

    chosen = [n for n in matmuls if (not include or matches(n, include)) and not matches(n, exclude)]
    kept = [n for n in matmuls if n not in chosen]
    blocks = [n for n in kept if blockwise and matches(n, blockwise)]
    rows = [n for n in kept if per_token and matches(n, per_token)]
    both = sorted(set(blocks) & set(rows))
    if both:
        raise ConfigError(f"int8 rule: {both} match both 'blockwise' and 'per_token'; narrow one of the patterns")
    steps = []
    if blocks:
        steps.append(lambda a, b: quantize_blockwise(a, b, blocks, block_size))
    if rows:
        from hamner.inference.per_token import quantize_per_token

        steps.append(lambda a, b: quantize_per_token(a, b, rows))
    stage = [dst.with_name(f"{dst.stem}.step{i}.onnx") for i in range(len(steps))] + [dst]
    quantize_dynamic(
        str(src), str(stage[0]), weight_type=QuantType.QInt8, per_channel=per_channel, op_types_to_quantize=["MatMul"],
        nodes_to_exclude=kept,
    )  # fmt: skip
    for i, step in enumerate(steps):
        step(stage[i], stage[i + 1])
        stage[i].unlink()
    kept = [n for n in kept if n not in blocks and n not in rows]
    log.info(
        "int8: %d MatMuls quantized dynamically, %d per token, %d blockwise, %d kept in fp32",
        len(weighted.intersection(chosen)), len(rows), len(blocks), len(weighted.intersection(kept)),
    )  # fmt: skip
    return kept


def quantize_by_rule(src: Path, dst: Path, rule: dict[str, Any]) -> list[str]:
    """:func:`quantize_int8` with the keys of an int8 rule (:data:`INT8_TEXT_DEFAULT`'s form)."""
    return quantize_int8(
        src, dst, rule["per_channel"], rule.get("include", ()), rule.get("exclude", ()), rule.get("blockwise", ()),
        rule.get("block_size", BLOCK_SIZE), rule.get("per_token", ()),
    )  # fmt: skip


def quantize_blockwise(src: Path, dst: Path, names: Sequence[str], block_size: int = BLOCK_SIZE) -> None:
    """The MatMuls ``names`` of ``src`` with symmetric 8-bit weights in blocks of ``block_size``
    (onnxruntime's ``MatMulNBitsQuantizer``, accuracy level 4: int8 arithmetic), written to ``dst``."""
    ort = _require_onnxruntime()
    if _version(ort.__version__) < _version(BLOCKWISE_MIN_ORT):
        raise ConfigError(
            f"8-bit blockwise MatMuls need onnxruntime >= {BLOCKWISE_MIN_ORT}, this is {ort.__version__}: "
            "upgrade it, or export with an int8 rule without 'blockwise'"
        )
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ImportError as exc:  # onnx-ir, which the quantizer imports (the onnx extra installs it)
        raise ConfigError(f"8-bit blockwise MatMuls need onnxruntime's MatMulNBitsQuantizer: pip install -e '.[onnx]' ({exc})") from None
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    # the quantizer takes every MatMul with constant weights unless excluded (nodes_to_include adds
    # to that set): the others are excluded by name
    others = [n.name for n in graph.node if n.op_type == "MatMul" and n.name not in set(names)]
    qlog = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = qlog.level
    qlog.setLevel(logging.WARNING)  # one INFO line per node of the graph otherwise
    try:
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4, bits=8)
        q = MatMulNBitsQuantizer(str(src), nodes_to_exclude=others, algo_config=config)
        q.process()
        q.model.save_model_to_file(str(dst), False)
    finally:
        qlog.setLevel(level)
    done = [re.sub(r"_Q8$", "", n.name) for n in onnx.load(str(dst), load_external_data=False).graph.node if n.op_type == "MatMulNBits"]
    if sorted(done) != sorted(names):
        raise RuntimeError(f"8-bit blockwise quantization changed {sorted(done)}, not the MatMuls asked for: {sorted(names)}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def export(
    model_dir: str | Path,
    out_dir: str | Path,
    int8: bool = False,
    int8_rule: dict[str, Any] | None = None,
    opset: int = OPSET,
) -> Path:
    """Export the checkpoint in ``model_dir`` to ``out_dir`` (see the module docstring); with
    ``int8``, the graph's MatMuls chosen by ``int8_rule`` (default :data:`INT8_TEXT_DEFAULT` for a
    text-only model, :data:`INT8_DEFAULT` for HamLearning; keys given replace the default's: blockwise
    output projections on a text-only model take ``{"blockwise": [...], "per_token": []}``) get
    int8 weights. Returns ``out_dir``."""
    import onnxruntime

    src, out = Path(model_dir), Path(out_dir)
    if is_exported(src):
        raise ConfigError(f"{src} is already an exported (ONNX) model; export its PyTorch checkpoint instead")
    if out.resolve() == src.resolve():
        raise ConfigError("--out must be another directory than --model")
    model = TextTagger.from_pretrained(src).eval()
    # eager attention traces into plain MatMul/Softmax, which onnxruntime fuses and quantizes
    if hasattr(model.encoder, "set_attn_implementation"):
        model.encoder.set_attn_implementation("eager")
    names = graph_inputs(model.config)
    batch = _example_batch(model)
    outputs = ["emissions"] + (["relevance", "level_weights"] if model.config.fuses else [])
    out.mkdir(parents=True, exist_ok=True)
    fp32_path = out / ONNX_FILE
    t0 = time.perf_counter()
    with torch.no_grad():
        parts = model.fuse(batch)  # the PyTorch model's own numbers, before the graph swaps any block
        reference = [parts[k] for k in outputs]
        torch.onnx.export(
            _EmissionsGraph(model, names).eval(), tuple(batch[n] for n in names), str(fp32_path), input_names=names,
            output_names=outputs, dynamic_axes={n: DYNAMIC_AXES[n] for n in [*names, *outputs]}, opset_version=opset,
            dynamo=False, do_constant_folding=True,
        )  # fmt: skip
    log.info("exported %s to %s in %.1f s", src, fp32_path, time.perf_counter() - t0)
    # the exported graph must give the model's own emissions on the example batch
    session = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    used = [i.name for i in session.get_inputs()]  # the exporter drops inputs the graph does not read
    got = session.run(None, {n: batch[n].numpy() for n in used})
    worst = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, reference, strict=True))
    if worst > 1e-3:
        raise RuntimeError(f"the exported graph differs from the PyTorch model by {worst:.2e} on the example batch")
    rule = None
    if int8:
        rule = {**(INT8_DEFAULT if model.config.multimodal else INT8_TEXT_DEFAULT), **(int8_rule or {})}
        if rule.get("blockwise"):
            rule.setdefault("block_size", BLOCK_SIZE)
        tmp = out / "model.fp32.onnx"
        fp32_path.replace(tmp)
        rule["kept_fp32"] = quantize_by_rule(tmp, fp32_path, rule)
        tmp.unlink()
    backbone = None
    vision = model.config.vision
    if model.config.multimodal and vision and vision.get("backbone"):
        from hamner.vision.onnx_backbone import export_backbone

        diff = export_backbone(out / BACKBONE_FILE, vision["backbone"], vision.get("backbone_weights"), vision.get("backbone_options"), opset)
        backbone = {"name": vision["backbone"], "file": BACKBONE_FILE, "max_abs_diff_on_random_image": diff}
    for sub in ("encoder", "tokenizer"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        shutil.copytree(src / sub, out / sub)
    shutil.copy2(src / CONFIG_FILE, out / CONFIG_FILE)
    crf = model.crf.crf
    meta = {
        "export_format": EXPORT_FORMAT,
        "source": str(src.resolve()),
        "source_weights_sha256": file_sha256(src / "model.safetensors"),
        "model_class": type(model).__name__,
        "inputs": used,
        "outputs": outputs,
        "levels": list(getattr(model, "levels", [])),
        "max_subtokens": model.max_subtokens,
        "semantic_budget": getattr(model, "semantic_budget", 0),
        "precision": "int8" if int8 else "fp32",
        "int8_rule": rule,
        "opset": opset,
        "max_abs_diff_on_example": worst,
        "backbone": backbone,
        "crf": {
            "start": crf.start_transitions.detach().tolist(),
            "end": crf.end_transitions.detach().tolist(),
            "transitions": crf.transitions.detach().tolist(),
        },
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return out


# ----- decoding -------------------------------------------------------------------------------------
def viterbi(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, end: np.ndarray, transitions: np.ndarray) -> list[list[int]]:
    """Best tag paths of a batch, as pytorch-crf's ``decode``: emissions (batch, words, tags), each
    row's first ``lengths[i]`` words real (a row of length 0 gives an empty path)."""
    b, n, _ = emissions.shape
    if n == 0:
        return [[] for _ in range(b)]
    score = start[None] + emissions[:, 0]  # shape: (batch, tags)
    history = np.zeros((max(n - 1, 0), b, emissions.shape[2]), dtype=np.int64)
    for i in range(1, n):
        step = score[:, :, None] + transitions[None] + emissions[:, i, None, :]  # shape: (batch, from, to)
        history[i - 1] = step.argmax(1)
        score = np.where((i < lengths)[:, None], step.max(1), score)
    best = (score + end[None]).argmax(1)  # shape: (batch,) the last real word's tag
    tags = np.zeros((b, n), dtype=np.int64)
    rows = np.arange(b)
    tags[rows, np.maximum(lengths - 1, 0)] = best
    cur = best
    for i in range(n - 2, -1, -1):  # tags[i] from the step into word i + 1
        active = i < lengths - 1
        cur = np.where(active, history[i][rows, cur], cur)
        tags[:, i] = np.where(active, cur, tags[:, i])
    return [tags[r, : lengths[r]].tolist() for r in range(b)]


# ----- the model ------------------------------------------------------------------------------------
class OnnxTagger:
    """An exported model on ONNX Runtime, with the interface of :class:`TextTagger` that tagging uses."""

    LONG_POSTS = TextTagger.LONG_POSTS
    WINDOW_OVERLAP = TextTagger.WINDOW_OVERLAP

    def __init__(self, directory: str | Path, threads: int | None = None, spinning: bool = True) -> None:
        """``threads``: the session's intra-op threads; ``None`` (the default) follows the process's
        :func:`hamner.threads.governor` (one per usable CPU, fewer while other processes keep them
        busy: a session's thread count is fixed when it is made, so one session per count is made
        when first needed, see :meth:`use_threads`). ``spinning=False``: the session's threads sleep
        as soon as a run ends instead of spinning for more work, which several sessions taking turns
        need (an ensemble's members: spinning, each idle member's threads would take the cores from
        the one running)."""
        from transformers import AutoTokenizer

        _require_onnxruntime()  # a clear error before anything is read
        d = Path(directory)
        if not is_exported(d):
            raise ConfigError(f"{d} is not an exported model: {META_FILE} or {ONNX_FILE} is missing (make one with 'hamner export')")
        self.directory = d
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("export_format") != EXPORT_FORMAT:
            raise ConfigError(f"{d / META_FILE}: export_format {meta.get('export_format')} is not {EXPORT_FORMAT}")
        ckpt = json.loads((d / CONFIG_FILE).read_text())
        if ckpt.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{d / CONFIG_FILE}: format_version {ckpt.get('format_version')} is not {FORMAT_VERSION}")
        if (meta.get("int8_rule") or {}).get("blockwise"):
            ort = _require_onnxruntime()
            if _version(ort.__version__) < _version(BLOCKWISE_MIN_ORT):
                raise ConfigError(
                    f"{d}: the export has 8-bit blockwise MatMuls (int8_rule 'blockwise'), which need onnxruntime >= "
                    f"{BLOCKWISE_MIN_ORT}; this is {ort.__version__}"
                )
        self.meta = meta
        self.config = TaggerConfig.from_dict(ckpt["tagger"])
        self.tokenizer = AutoTokenizer.from_pretrained(d / "tokenizer")
        self.max_subtokens = int(meta["max_subtokens"])
        self.semantic_budget = int(meta["semantic_budget"])
        self.levels: list[str] = list(meta["levels"])
        c = self.config
        self.word_encoder = WordEncoder.for_model(self.tokenizer, self.max_subtokens, c)
        crf = meta["crf"]
        self._start = np.asarray(crf["start"], dtype=np.float32)
        self._end = np.asarray(crf["end"], dtype=np.float32)
        self._trans = np.asarray(crf["transitions"], dtype=np.float32)
        n = len(c.labels)
        if self._start.shape != (n,) or self._end.shape != (n,) or self._trans.shape != (n, n):
            raise ConfigError(
                f"{d / META_FILE}: the CRF has {self._start.shape[0]} tags but {d / CONFIG_FILE} lists {n} labels "
                f"({', '.join(c.labels)}): the files come from different checkpoints; export again"
            )
        self._spinning = spinning
        self._fixed_threads = threads
        # several batches of one run() side by side, one per thread (see run); False: one at a time
        self.batch_parallel = True
        self._sessions: dict[int, Any] = {}
        self._sessions_lock = threading.Lock()
        if threads is None:
            from hamner.threads import governor

            self._threads = governor().threads()
        else:
            self._threads = threads
        self.session = self._session(self._threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._cls_sep = (self.tokenizer.cls_token_id or 0, self.tokenizer.sep_token_id or 0)
        self.training = False

    @classmethod
    def from_pretrained(cls, directory: str | Path, threads: int | None = None) -> OnnxTagger:
        return cls(directory, threads)

    def _session(self, threads: int) -> Any:
        """The session with ``threads`` intra-op threads, made on first use and kept."""
        with self._sessions_lock:
            session = self._sessions.get(threads)
            if session is None:
                session = cpu_session(self.directory / ONNX_FILE, threads, self._spinning)
                if self._sessions:
                    log.debug("%s: a session with %d threads made (others: %s)", self.directory, threads, sorted(self._sessions))
                self._sessions[threads] = session
            return session

    @property
    def threads(self) -> int:
        """The intra-op threads of the session in use."""
        return self._threads

    def use_threads(self, threads: int | None = None) -> int:
        """Run on a session of ``threads`` threads from now on (``None``: what the process's governor
        says now). A model made with a fixed thread count keeps it. Returns the count in use."""
        if self._fixed_threads is not None:
            return self._threads
        if threads is None:
            from hamner.threads import governor

            threads = governor().threads()
        if threads != self._threads:
            self.session = self._session(threads)
            self._threads = threads
        return threads

    def batch_workers(self) -> int:
        """How many batches :meth:`run` tags side by side: the fixed thread count of a model made
        with one, else the CPUs this process may use (:func:`hamner.threads.usable_cpus`, or the
        count pinned by ``set_threads`` or ``OMP_NUM_THREADS``). Not lowered while other processes
        keep CPUs busy, as the session's threads are: one-thread runs do not wait on each other, so
        a parked one delays only its own batch, and each takes the CPU share the scheduler gives it."""
        if not self.batch_parallel:
            return 1
        if self._fixed_threads is not None:
            return self._fixed_threads
        from hamner.threads import governor

        g = governor()
        return g.pinned or g.cpus

    @property
    def precision(self) -> str:
        return str(self.meta["precision"])

    @property
    def backbone_path(self) -> Path | None:
        """The exported image backbone (a multimodal model's), or None."""
        return _backbone_in(self.directory, self.meta)

    def crf_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The CRF's start, end and transition scores (fp32), as exported."""
        return self._start, self._end, self._trans

    # torch.nn.Module's calls that the Tagger makes: an ONNX Runtime session runs on the CPU only
    def to(self, device: Any) -> OnnxTagger:
        if torch.device(device).type != "cpu":
            raise ConfigError(f"an exported (ONNX) model runs on the CPU here, not on {device}")
        return self

    def eval(self) -> OnnxTagger:
        return self

    def train(self, mode: bool = True) -> OnnxTagger:
        return self

    # ----- inputs: the PyTorch models' own code ---------------------------------------------------
    def encode_post(
        self, words: Sequence[str], tag_ids: list[int] | None = None, visual: Any = None,
        entity_ids: Sequence[int] | None = None, marker: str | None = None,
    ) -> EncodedPost:  # fmt: skip
        if self.config.multimodal:
            from hamner.models.hamlearning import HamLearningTagger

            return HamLearningTagger.encode_post(self, words, tag_ids, visual, entity_ids, marker)  # type: ignore[arg-type]
        return self.word_encoder.encode(words, tag_ids, entity_ids=entity_ids, marker=marker)

    def collate(self, posts: Sequence[EncodedPost]) -> dict[str, torch.Tensor]:
        if self.config.multimodal:
            from hamner.models.hamlearning import HamLearningTagger

            return HamLearningTagger.collate(self, posts)  # type: ignore[arg-type]
        return collate(posts, self.tokenizer.pad_token_id or 0)

    def _collate_pixels(self, posts: Sequence[EncodedPost]) -> dict[str, torch.Tensor]:
        from hamner.models.hamlearning import HamLearningTagger

        return HamLearningTagger._collate_pixels(self, posts)  # type: ignore[arg-type]

    def plan_windows(self, words: Sequence[str], long_posts: str = "window") -> list[tuple[int, int]]:
        return TextTagger.plan_windows(self, words, long_posts)  # type: ignore[arg-type]

    def merge_windows(self, plan: Sequence[tuple[int, int]], preds: Sequence[Prediction]) -> Prediction:
        return TextTagger.merge_windows(self, plan, preds)  # type: ignore[arg-type]

    def encode_inputs(
        self, word_lists: Sequence[Sequence[str]], visuals: Sequence[Any] | None, long_posts: str
    ) -> tuple[list[list[tuple[int, int]]], list[EncodedPost], list[int]]:
        return TextTagger.encode_inputs(self, word_lists, visuals, long_posts)  # type: ignore[arg-type]

    def plan_inputs(
        self, word_lists: Sequence[Sequence[str]], long_posts: str
    ) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int, int]], list[list[int]] | None]:
        return TextTagger.plan_inputs(self, word_lists, long_posts)  # type: ignore[arg-type]

    def assemble(
        self, word_lists: Sequence[Sequence[str]], plans: Sequence[list[tuple[int, int]]], got: Sequence[Prediction | None]
    ) -> list[Prediction]:
        return TextTagger.assemble(self, word_lists, plans, got)  # type: ignore[arg-type]

    def decode_one(self, emissions: torch.Tensor) -> list[int]:
        em = emissions.float().numpy()[None]
        return viterbi(em, np.array([em.shape[1]]), self._start, self._end, self._trans)[0]

    # ----- running --------------------------------------------------------------------------------
    def feeds(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The session's inputs for a collated batch (empty placeholders for levels it lacks)."""
        full = fill_missing(batch, self.input_names, self.config, self._cls_sep)
        return {n: full[n].numpy() for n in self.input_names}

    def forward_numpy(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The graph's outputs (emissions, and relevance / level weights for HamLearning) for a batch."""
        return dict(zip(self.output_names, self.session.run(None, self.feeds(batch)), strict=True))

    def run(
        self,
        word_lists: Sequence[Sequence[str]],
        visuals: Sequence[Any] | None = None,
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        long_posts: str = "window",
        between_batches: Callable[[], Any] | None = None,
    ) -> list[Prediction]:
        """:meth:`TextTagger.run` on ONNX Runtime: the same windows, batches and Prediction objects.

        With several threads (:meth:`batch_workers`) and several batches, the batches run side by side,
        one per thread, each on one thread of a shared one-thread session (ONNX Runtime runs a
        session from several threads at once), instead of one batch at a time split over the
        threads: a post-sized matrix product split over threads waits on all of them at every
        operation, and two one-thread runs tagged 1.5 times as many posts per second as one
        two-thread run (docs/speed.md). One batch alone uses the many-thread session.
        ``between_batches`` is called before every batch but the first only when the batches run one
        at a time (``batch_parallel = False``, or one worker): side by side, the count is fixed.

        Side by side, a text-only model's posts are also encoded (sub-tokens, shapes, bytes) and
        collated by the worker that runs their batch, not all before the first batch: one worker's
        Python then overlaps another's session run (which releases the GIL), instead of the session
        threads waiting on the encoding of the whole call. The batches are the same (the posts are
        ordered by their input length, computed without encoding them)."""
        if visuals is not None and len(visuals) != len(word_lists):
            raise ValueError(f"{len(word_lists)} posts but {len(visuals)} visual inputs")
        labels = self.config.labels
        workers = self.batch_workers()
        lazy = workers > 1 and not self.config.multimodal
        if lazy:
            plans, units, ents = self.plan_inputs(word_lists, long_posts)
            lengths = [self.word_encoder.input_length(word_lists[i][s:e]) for i, s, e in units]
            order = sorted(range(len(units)), key=lengths.__getitem__)  # as encode_inputs orders them

            def encoded_of(u: int) -> EncodedPost:
                i, s, e = units[u]
                return self.encode_post(word_lists[i][s:e], None, None, ents[i][s:e] if ents is not None else None)

            n_units = len(units)
        else:
            plans, encoded, order = self.encode_inputs(word_lists, visuals, long_posts)

            def encoded_of(u: int) -> EncodedPost:
                return encoded[u]

            n_units = len(encoded)
        got: list[Prediction | None] = [None] * n_units

        def one(start: int, session: Any) -> int:
            idx = order[start : start + batch_size]
            batch = self.collate([encoded_of(u) for u in idx])
            out = dict(zip(self.output_names, session.run(None, self.feeds(batch)), strict=True))
            emissions = out["emissions"]  # shape: (batch, words, labels)
            lengths = batch["word_mask"].sum(1).numpy()
            paths = viterbi(emissions, lengths, self._start, self._end, self._trans)
            rel = out["relevance"].tolist() if "relevance" in out else None
            lw = out["level_weights"].tolist() if "level_weights" in out else None
            em = torch.from_numpy(emissions)
            for j, (u, path) in enumerate(zip(idx, paths, strict=True)):
                got[u] = Prediction(
                    tags=[labels[t] for t in path],
                    emissions=em[j, : len(path)],
                    relevance=rel[j] if rel is not None else None,
                    level_weights=dict(zip(self.levels, lw[j], strict=True)) if lw is not None else None,
                )
            return len(idx)

        starts = range(0, n_units, batch_size)
        bar = tqdm(total=len(starts), desc=desc, disable=not progress, leave=False)
        workers = min(workers, len(starts))
        if workers > 1:
            single = self._session(1)
            with ThreadPoolExecutor(workers, thread_name_prefix="hamner-onnx") as pool:
                for _ in pool.map(lambda start: one(start, single), starts):
                    bar.update()
        else:
            for start in starts:
                if start and between_batches is not None:
                    between_batches()  # may switch self.session to another thread count
                one(start, self.session)
                bar.update()
        bar.close()
        return self.assemble(word_lists, plans, got)

    def predict(
        self,
        word_lists: Sequence[Sequence[str]],
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        visuals: Sequence[Any] | None = None,
    ) -> list[list[str]]:
        return [p.tags for p in self.run(word_lists, visuals, batch_size, progress, desc)]


def is_exported_model(model: Any) -> bool:
    """Whether ``model`` runs on ONNX Runtime: an exported model, or an ensemble of them."""
    return isinstance(model, OnnxTagger) or bool(getattr(model, "exported", False))


def load_model(directory: str | Path, threads: int | None = None) -> TextTagger | OnnxTagger:
    """The model in ``directory``: an :class:`OnnxTagger` for ``hamner export`` output, else the
    PyTorch checkpoint (TextTagger or HamLearningTagger)."""
    if is_exported(directory):
        return OnnxTagger(directory, threads)
    return TextTagger.from_pretrained(directory)
