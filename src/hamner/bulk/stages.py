"""The steps of a ``hamner bulk`` job as plain callables over pyarrow tables (Ray Data runs them in
tasks and actor pools; the tests also call them directly).

- :func:`read_parts`: input parts -> one row per input row, bad rows with ``error`` set.
- :class:`ImageStage` (HamLearning only): decodes each row's image and extracts its visual inputs
  with the checkpoint's image extractor, built once per actor; a bad image is the row's error (or,
  with ``on_bad_image="skip"``, the post keeps its caption words and is tagged, with the error kept).
- :class:`TagStage`: the :class:`~hamner.inference.tagger.Tagger`, loaded once per actor.

The driver writes the shards (:mod:`hamner.bulk.output`). One row never stops a stage: whatever it
holds, it leaves each stage as a row, with its ``error`` when it cannot be tagged (:func:`_safe_table`
is the last guard: a row Arrow cannot store becomes an ``internal`` error row). A failure that is
not one row's (every row of a batch failing alike) still stops the job.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from hamner.bulk.inputs import EMPTY_TEXT, Part, error_kind, id_text, read_part
from hamner.errors import ConfigError, ImageError, TextError

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")


def _rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist()  # type: ignore[no-any-return]


def _text(value: str) -> str:
    """Text any output can hold (an unpaired surrogate backslash-escaped)."""
    return value.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _failure(exc: BaseException) -> str:
    return _text(f"{type(exc).__name__}: {exc}")


def _safe_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    """The rows as a table; a row Arrow refuses (it should not happen: the stages check what they
    pass on) becomes an ``internal`` error row with its key, never a failed batch."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (UnicodeError, pa.ArrowException, OverflowError, TypeError, ValueError):
        pass
    kept = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=schema)
        except (UnicodeError, pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            log.warning("row %s:%s could not be stored (%s); written as an error row", row.get("source"), row.get("line"), _failure(exc))
            row = {
                **dict.fromkeys(schema.names), "source": row["source"], "line": row["line"], "id": _text(str(row.get("id"))),
                "error": f"internal error: this row could not be stored ({_failure(exc)})", "error_kind": "internal",
            }  # fmt: skip
        kept.append(row)
    return pa.Table.from_pylist(kept, schema=schema)


def _all_failed(failures: int, tried: int, stage: str, exc: BaseException | None) -> None:
    """Several rows, every one failing with an unexpected error: the stage is broken, not the rows."""
    if tried > 1 and failures == tried and exc is not None:
        raise RuntimeError(f"{stage}: all {tried} rows of a batch failed ({_failure(exc)}); not a bad row: stopping") from exc


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
            error = post.error  # a bad row carries only its key and error: its fields may hold anything
            good = error is None
            rows.append(
                {
                    "source": part.source, "line": post.line, "id": id_text(post.id),
                    "text": post.text if good else None, "image": post.image if good else None,
                    "caption": post.caption if good else None,
                    "error": None if error is None else _text(error), "error_kind": None if error is None else error_kind(error),
                }
            )  # fmt: skip
    return _safe_table(rows, post_schema())


def _set_threads(threads: int | None) -> None:
    from hamner.vision import set_threads

    set_threads(threads)


def encode_features(features: Any) -> bytes:
    """ImageFeatures -> bytes (tensors bit for bit, via torch.save) to travel between actors."""
    import torch

    buf = io.BytesIO()
    torch.save({"record": features.record(), "tensors": features.tensors()}, buf)
    return buf.getvalue()


def decode_features(data: bytes | None) -> Any:
    import torch

    from hamner.vision.extractor import ImageFeatures

    if data is None:
        raise ValueError("no visual inputs: the image stage did not read this row")
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


def has_words(text: str, style: str) -> bool:
    """The tagging stage's emptiness test (its word tokenizer finds a word), for the image stage: a
    text of only U+001C (which ``str.strip`` drops) is a word to the tokenizer. A text the tokenizer
    rejects has no image read either (the tagging stage gives the row its error)."""
    from hamner.data.tokenize import tokenize

    try:
        return bool(tokenize(text, style))
    except TextError:
        return False


class ImageStage:
    """Image decoding and visual inputs, the extractor built once per actor."""

    def __init__(self, model_dir: str, on_bad_image: str = "error", threads: int | None = None) -> None:
        from hamner.inference.onnx import exported_backbone
        from hamner.inference.tagger import build_extractor

        if on_bad_image not in ON_BAD_IMAGE:
            raise ConfigError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        _set_threads(threads)
        self.on_bad_image = on_bad_image
        config = _checkpoint_config(model_dir)
        self.style = config.tokenizer_style
        # the policy is applied here; an exported model's image backbone runs on ONNX Runtime
        self.extractor = build_extractor(config, exported_backbone(model_dir), "error", threads)

    def __call__(self, batch: Any) -> Any:
        rows = _rows(batch)
        tried, failed, last = 0, 0, None
        for row in rows:
            row["visual"], row["image_status"] = None, None
            if row["error"] is not None or not has_words(row["text"], self.style):
                continue  # not tagged: its image is not read
            tried += 1
            try:
                self._features(row)
            except Exception as exc:  # one row's unexpected failure is that row's error
                failed, last = failed + 1, exc
                log.warning("row %s:%s: reading its image failed (%s)", row["source"], row["line"], _failure(exc), exc_info=True)
                row["visual"], row["image_status"] = None, "unreadable"
                row["error"], row["error_kind"] = f"the image could not be read: {_failure(exc)}", "image_unreadable"
        _all_failed(failed, tried, "image stage", last)
        return _safe_table(rows, post_schema(with_visual=True))

    def _features(self, row: dict[str, Any]) -> None:
        key = f"{row['source']}:{row['line']}"
        if row["image"] is None:
            feats = self.extractor.without_image(key, "no_image", None, row["caption"], None)
        else:
            try:
                loaded = self.extractor.load(row["image"])
            except ImageError as exc:
                row["image_status"] = exc.kind
                row["error"], row["error_kind"] = _text(str(exc)), f"image_{exc.kind}"
                if self.on_bad_image == "error":
                    return
                feats = self.extractor.without_image(key, exc.kind, str(exc), row["caption"], None)
            else:
                feats = self.extractor.extract(loaded, key=key, caption=row["caption"])
        row["visual"], row["image_status"] = encode_features(feats), feats.status


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
                row["error"], row["error_kind"] = _text(exc.detail), error_kind(exc.detail)
                continue
            if not toks:
                row["error"], row["error_kind"], row["empty"] = EMPTY_TEXT, "empty_text", True
                continue
            if multimodal:
                try:
                    visual = decode_features(row.get("visual"))
                except Exception as exc:  # missing or damaged visual inputs are this row's error
                    log.warning("row %s:%s: no usable visual inputs (%s)", row["source"], row["line"], _failure(exc))
                    row["error"] = f"internal error: the row's visual inputs did not reach the tagging stage intact ({_failure(exc)})"
                    row["error_kind"] = "internal"
                    continue
                visuals.append(visual)
            todo.append(k)
            tokens.append(toks)
        done = self._tag(rows, todo, tokens, visuals if multimodal else None)
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

    def _tag(self, rows: list[dict[str, Any]], todo: list[int], tokens: list[Any], visuals: list[Any] | None) -> dict[int, Any]:
        """The batch at once; if that fails, row by row, a row that fails alone getting the error."""
        texts = [rows[k]["text"] for k in todo]
        try:
            return dict(zip(todo, self.tagger.tag_tokenized(texts, tokens, features=visuals), strict=True))
        except Exception as exc:  # find the row: the others are tagged
            log.warning("tagging a batch of %d rows failed (%s); tagging them one by one", len(todo), _failure(exc))
        done, failed, last = {}, 0, None
        for n, k in enumerate(todo):
            try:
                (done[k],) = self.tagger.tag_tokenized([texts[n]], [tokens[n]], features=[visuals[n]] if visuals is not None else None)
            except Exception as exc:  # this row's error
                failed, last = failed + 1, exc
                log.warning("row %s:%s: tagging failed (%s)", rows[k]["source"], rows[k]["line"], _failure(exc), exc_info=True)
                rows[k]["error"], rows[k]["error_kind"] = f"internal error: tagging failed ({_failure(exc)})", "internal"
        _all_failed(failed, len(todo), "tagging stage", last)
        return done


def _tagged_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    """Output rows with ``source`` still the input's index (the driver names the file)."""
    import pyarrow as pa

    fields = [pa.field("source", pa.int32()) if f.name == "source" else f for f in schema]
    return _safe_table(rows, pa.schema(fields))


def write_batch(batch: Any, out_dir: str, sources: list[str], fmt: str) -> Any:
    """One shard per batch; returns the shard's index record as a one-row table."""
    import pyarrow as pa

    from hamner.bulk.output import write_shard

    rows = _rows(batch)
    if not rows:
        return pa.table({"record": pa.array([], pa.string())})
    return pa.table({"record": [json.dumps(write_shard(rows, out_dir, sources, fmt))]})
