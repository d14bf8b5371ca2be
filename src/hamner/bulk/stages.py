"""The steps of a ``hamner bulk`` job as plain callables over pyarrow tables (Ray Data runs them in
tasks and actor pools; the tests also call them directly).

- :func:`read_parts`: input parts -> one row per input row, bad rows with ``error`` set.
- :class:`ImageStage` (HamLearning only): decodes each row's image and extracts its visual inputs
  with the checkpoint's image extractor, built once per actor; a bad image is the row's error (or,
  with ``on_bad_image="skip"``, the post keeps its caption words and is tagged, with the error kept).
- :class:`TagStage`: the :class:`~hamner.inference.tagger.Tagger`, loaded once per actor.
- :func:`write_batch`: one shard per batch (see :mod:`hamner.bulk.output`); returns its index record.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from hamner.bulk.inputs import EMPTY_TEXT, Part, error_kind, id_text, read_part
from hamner.bulk.output import write_shard
from hamner.errors import ConfigError, ImageError, TextError

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")


def _rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist()  # type: ignore[no-any-return]


def _table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema)


def post_schema(with_visual: bool = False) -> Any:
    """The rows between the stages: the input row, then (HamLearning) its serialised visual inputs."""
    import pyarrow as pa

    fields = [
        ("source", pa.int32()), ("line", pa.int64()), ("id", pa.string()), ("text", pa.string()),
        ("image", pa.string()), ("caption", pa.string()), ("error", pa.string()), ("error_kind", pa.string()),
    ]  # fmt: skip
    if with_visual:
        fields += [("visual", pa.binary()), ("image_status", pa.string())]
    return pa.schema(fields)


def read_parts(batch: Any, on_bad_text: str = "error", max_line_bytes: int = 1 << 20) -> Any:
    """A batch of part descriptions -> their rows."""
    rows = []
    for desc in _rows(batch):
        part = Part.from_dict(json.loads(desc["part"]))
        for post in read_part(part, on_bad_text, max_line_bytes):
            rows.append(
                {
                    "source": part.source, "line": post.line, "id": id_text(post.id),
                    "text": post.text if post.error is None else None, "image": post.image, "caption": post.caption,
                    "error": post.error, "error_kind": error_kind(post.error) if post.error is not None else None,
                }
            )  # fmt: skip
    return _table(rows, post_schema())


def _set_threads(threads: int | None) -> None:
    from hamner.vision import set_threads

    set_threads(threads)


def encode_features(features: Any) -> bytes:
    """ImageFeatures -> bytes (tensors bit for bit, via torch.save) to travel between actors."""
    import torch

    buf = io.BytesIO()
    torch.save({"record": features.record(), "tensors": features.tensors()}, buf)
    return buf.getvalue()


def decode_features(data: bytes) -> Any:
    import torch

    from hamner.vision.extractor import ImageFeatures

    got = torch.load(io.BytesIO(data), weights_only=True)
    return ImageFeatures.from_parts(got["record"], got["tensors"])


def _checkpoint_config(model_dir: str) -> Any:
    from pathlib import Path

    from hamner.models.config import TaggerConfig
    from hamner.models.tagger import CONFIG_FILE

    path = Path(model_dir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{model_dir} is not a hamner checkpoint: {CONFIG_FILE} is missing")
    return TaggerConfig.from_dict(json.loads(path.read_text())["tagger"])


def is_multimodal(model_dir: str) -> bool:
    return bool(_checkpoint_config(model_dir).multimodal)


class ImageStage:
    """Image decoding and visual inputs, the extractor built once per actor."""

    def __init__(self, model_dir: str, on_bad_image: str = "error", threads: int | None = None) -> None:
        from hamner.inference.onnx import exported_backbone
        from hamner.inference.tagger import build_extractor

        if on_bad_image not in ON_BAD_IMAGE:
            raise ConfigError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        _set_threads(threads)
        self.on_bad_image = on_bad_image
        # the policy is applied here; an exported model's image backbone runs on ONNX Runtime
        self.extractor = build_extractor(_checkpoint_config(model_dir), exported_backbone(model_dir), "error", threads)

    def __call__(self, batch: Any) -> Any:
        rows = _rows(batch)
        for row in rows:
            row["visual"], row["image_status"] = None, None
            if row["error"] is not None or not row["text"].strip():
                continue  # not tagged: its image is not read
            key = f"{row['source']}:{row['line']}"
            if row["image"] is None:
                feats = self.extractor.without_image(key, "no_image", None, row["caption"], None)
            else:
                try:
                    loaded = self.extractor.load(row["image"])
                except ImageError as exc:
                    row["image_status"] = exc.kind
                    row["error"], row["error_kind"] = str(exc), f"image_{exc.kind}"
                    if self.on_bad_image == "error":
                        continue
                    feats = self.extractor.without_image(key, exc.kind, str(exc), row["caption"], None)
                else:
                    feats = self.extractor.extract(loaded, key=key, caption=row["caption"])
            row["visual"], row["image_status"] = encode_features(feats), feats.status
        return _table(rows, post_schema(with_visual=True))


class TagStage:
    """The tagger, loaded once per actor: rows -> output rows (entities, r, level weights, errors)."""

    def __init__(
        self, model_dir: str, device: str = "cpu", batch_size: int = 32, precision: str = "auto", threads: int | None = None
    ) -> None:
        from hamner.inference.tagger import Tagger

        _set_threads(threads)
        self.tagger = Tagger.from_pretrained(model_dir, device=device, batch_size=batch_size, precision=precision)

    def __call__(self, batch: Any) -> Any:
        from hamner.bulk.output import output_schema

        rows = _rows(batch)
        multimodal = self.tagger.multimodal
        todo, tokens, visuals = [], [], []
        for k, row in enumerate(rows):
            if row["error"] is not None and row.get("visual") is None:
                continue  # a bad row, or a bad image under on_bad_image="error"
            try:
                toks = self.tagger.tokenize(row["text"])
            except TextError as exc:
                row["error"], row["error_kind"] = exc.detail, error_kind(exc.detail)
                continue
            if not toks:
                row["error"], row["error_kind"], row["empty"] = EMPTY_TEXT, "empty_text", True
                continue
            todo.append(k)
            tokens.append(toks)
            if multimodal:
                visuals.append(decode_features(row["visual"]))
        tagged = self.tagger.tag_tokenized(
            [rows[k]["text"] for k in todo], tokens, features=visuals if multimodal else None
        )  # fmt: skip
        done = dict(zip(todo, tagged, strict=True))
        out = []
        for k, row in enumerate(rows):
            post = done.get(k)
            ents = [{"text": e.text, "type": e.type, "start": e.start, "end": e.end} for e in post.entities] if post else None
            out.append(
                {
                    "id": row["id"], "source": row["source"], "line": row["line"], "text": row["text"],
                    "entities": [] if row.get("empty") else ents,
                    "relevance": post.relevance if post is not None else None,
                    "level_weights": post.level_weights if post is not None else None,
                    "image_status": row.get("image_status"),
                    "windows": post.windows if post is not None else None,
                    "error": row["error"], "error_kind": row["error_kind"],
                }
            )  # fmt: skip
        return _tagged_table(out, output_schema())


def _tagged_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    """Output rows with ``source`` still the input's index (the writer names the file)."""
    import pyarrow as pa

    fields = [pa.field("source", pa.int32()) if f.name == "source" else f for f in schema]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def write_batch(batch: Any, out_dir: str, sources: list[str], fmt: str) -> Any:
    """One shard per batch; returns the shard's index record as a one-row table."""
    import pyarrow as pa

    rows = _rows(batch)
    if not rows:
        return pa.table({"record": pa.array([], pa.string())})
    return pa.table({"record": [json.dumps(write_shard(rows, out_dir, sources, fmt))]})
