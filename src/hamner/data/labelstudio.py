"""Label Studio round trip: hamner's tagged posts as pre-annotations in, corrected exports out.

Three pieces, no Label Studio import (it lives in its own environment, see
``scripts/install_label_studio.sh``):

- :func:`labeling_config`: the XML of a labelling project for a label set (a ``Text`` object, a
  ``Labels`` control, optionally an ``Image`` beside the text);
- :func:`predictions_for`: ``hamner tag`` output records -> Label Studio import tasks whose
  ``predictions`` hold the model's entities (what the annotator corrects);
- :func:`read_export`: a Label Studio JSON export (``exportType=JSON``: an array of tasks) -> posts
  ``{"id", "text", "entities": [{"start", "end", "type"}], "image", "caption", "_where"}``, the shape
  of hamner's JSONL corpora, taken from the latest annotation of each task that was not cancelled.

Offsets: Label Studio's ``Text`` tag stores ``value.start`` / ``value.end`` in Unicode code points,
which are Python string indices and what ``hamner tag`` writes by default. Checked in the editor of
label-studio 1.23.2 itself (``web/libs/editor/src/tags/object/RichText/model.js``: "the start global
offset in codepoints"; ``utils/selection-tools.js`` converts the browser's UTF-16 selection with
``fixCodePointsInRange``), and by the editor's end-to-end test "NER - Emoji - Text", which expects
``start=21`` for "test" in "🐱 Warning: This is a test text" (21 code points, 22 UTF-16 units).
Records tagged with ``--offsets utf16`` are converted back (``offsets="utf16"``). Every span is
checked against the text it names (``value.text``), so offsets in the wrong unit fail with a
message that says so.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from hamner.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

OFFSET_UNITS = ("codepoints", "utf16")
UNANNOTATED_POLICIES = ("skip", "error")
#: colours of the labels in the generated config, in order (a type past the list reuses them)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324")


class LabelStudioError(DataFormatError):
    """A task of a Label Studio export (or a tagged record) that cannot be read; ``where`` names it
    ("export.json: task 12")."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(where, None, message)


# --------------------------------------------------------------------------------------------- config


def labeling_config(
    types: Sequence[str],
    *,
    from_name: str = "label",
    to_name: str = "text",
    text_field: str = "text",
    image_field: str | None = None,
    caption_field: str | None = None,
) -> str:
    """A labelling config for ``types``: the post's text to label with one ``Labels`` control; with
    ``image_field`` the task's image is shown above it (``$image``), with ``caption_field`` its
    caption below (for reading, not labelled)."""
    types = list(types)
    if not types:
        raise ConfigError("labeling_config needs at least one entity type")
    dupes = sorted(t for t, n in Counter(types).items() if n > 1)
    if dupes:
        raise ConfigError(f"labeling_config: entity types given twice: {dupes}")
    for t in types:
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"labeling_config: an entity type must be a non-empty string, got {t!r}")
    lines = ["<View>"]
    if image_field is not None:
        lines.append(f'  <Image name="image" value={quoteattr("$" + image_field)}/>')
    lines.append(f"  <Labels name={quoteattr(from_name)} toName={quoteattr(to_name)}>")
    for k, t in enumerate(types):
        lines.append(f"    <Label value={quoteattr(t)} background={quoteattr(PALETTE[k % len(PALETTE)])}/>")
    lines.append("  </Labels>")
    lines.append(f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + text_field)}/>")
    if caption_field is not None:
        lines.append(f'  <Text name="caption" value={quoteattr("$" + caption_field)}/>')
    lines.append("</View>")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- predictions


def _codepoints_from_utf16(text: str) -> dict[int, int]:
    """UTF-16 code-unit offset -> code-point offset, for every boundary between characters."""
    out, units = {0: 0}, 0
    for i, c in enumerate(text):
        units += 2 if ord(c) > 0xFFFF else 1
        out[units] = i + 1
    return out


def predictions_for(
    tagged_records: Iterable[dict[str, Any]],
    from_name: str = "label",
    to_name: str = "text",
    model_version: str = "hamner",
    *,
    offsets: str = "codepoints",
    text_field: str = "text",
    image_url_prefix: str = "",
    source: str = "<records>",
) -> list[dict[str, Any]]:
    """Label Studio import tasks, one per tagged post, each with one prediction of its entities.

    ``tagged_records`` are ``hamner tag`` output lines (``id``, ``line``, ``text``, ``entities`` with
    ``start``/``end``/``type``/``text`` in ``offsets`` units; an ``image`` and ``caption`` are kept
    when present, the image behind ``image_url_prefix``, e.g. ``/data/local-files/?d=photos/``).
    Error records (a line ``hamner tag --on-bad-line skip`` could not tag) have no text: they are left
    out and counted in a warning. The post's id goes into ``data["id"]`` so the export names it again.
    """
    if offsets not in OFFSET_UNITS:
        raise ConfigError(f"offsets must be one of {OFFSET_UNITS}, got {offsets!r}")
    tasks: list[dict[str, Any]] = []
    errors: list[Any] = []
    for k, rec in enumerate(tagged_records):
        line = rec.get("line", k + 1) if isinstance(rec, dict) else k + 1
        where = f"{source}: line {line}"
        if not isinstance(rec, dict):
            raise LabelStudioError(where, f"expected a tagged record (a JSON object), got {type(rec).__name__}")
        if "error" in rec and "text" not in rec:
            errors.append(rec.get("id", line))
            continue
        text = rec.get("text")
        if not isinstance(text, str):
            raise LabelStudioError(where, 'expected a string field "text" (hamner tag output)')
        ents = rec.get("entities")
        if not isinstance(ents, list):
            raise LabelStudioError(where, 'expected a list field "entities" (hamner tag output)')
        table = _codepoints_from_utf16(text) if offsets == "utf16" else None
        result = []
        for j, e in enumerate(ents):
            if not isinstance(e, dict) or not all(isinstance(e.get(f), int) for f in ("start", "end")) or not isinstance(e.get("type"), str):
                raise LabelStudioError(where, f"entity {j} must have integer start and end and a string type, got {e!r}")
            start, end = e["start"], e["end"]
            if table is not None:
                if start not in table or end not in table:
                    raise LabelStudioError(where, f"entity {j} ({start}, {end}) is not on a character boundary in UTF-16 units")
                start, end = table[start], table[end]
            if not 0 <= start < end <= len(text):
                raise LabelStudioError(where, f"entity {j} ({start}, {end}) is off the text ({len(text)} characters)")
            span = text[start:end]
            if "text" in e and e["text"] != span:
                hint = "" if offsets == "utf16" else " (tagged with --offsets utf16? pass offsets='utf16')"
                raise LabelStudioError(where, f"entity {j} says {e['text']!r} but its offsets ({e['start']}, {e['end']}) cover {span!r}{hint}")
            result.append({
                "id": f"h{k}_{j}", "from_name": from_name, "to_name": to_name, "type": "labels",
                "value": {"start": start, "end": end, "text": span, "labels": [e["type"]]},
            })  # fmt: skip
        data: dict[str, Any] = {text_field: text}
        if "id" in rec:
            data["id"] = rec["id"]
        if rec.get("image") is not None:
            data["image"] = image_url_prefix + str(rec["image"])
        if rec.get("caption") is not None:
            data["caption"] = rec["caption"]
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "result": result}]})
    if errors:
        log.warning("%s: %d error records (posts hamner tag could not tag) left out: ids %s", source, len(errors), errors[:10])
    return tasks


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (``hamner tag`` output); a bad line names the file and line."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(str(path), n, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise DataFormatError(str(path), n, "expected a JSON object")
            rec.setdefault("line", n)
            records.append(rec)
    return records


# --------------------------------------------------------------------------------------------- export


def _when(annotation: dict[str, Any], where: str) -> tuple[datetime, int]:
    """When an annotation was last saved (``updated_at``, else ``created_at``), id as tie-break."""
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    if not isinstance(stamp, str):
        raise LabelStudioError(where, f"annotation {annotation.get('id')!r} has no created_at/updated_at timestamp")
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise LabelStudioError(where, f"annotation {annotation.get('id')!r}: timestamp {stamp!r} is not ISO 8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ann_id = annotation.get("id")
    return when, ann_id if isinstance(ann_id, int) else -1


def _latest(annotations: list[Any], where: str) -> dict[str, Any] | None:
    kept = []
    for a in annotations:
        if not isinstance(a, dict):
            raise LabelStudioError(where, f"an annotation must be a JSON object, got {type(a).__name__}")
        if not a.get("was_cancelled", False):
            kept.append(a)
    if not kept:
        return None
    return max(kept, key=lambda a: _when(a, where))


def _entities(
    result: list[Any], text: str, where: str, from_name: str | None, to_name: str | None, ignored: Counter[str]
) -> list[dict[str, Any]]:
    """The annotation's ``labels`` regions as checked spans, sorted by start."""
    if not isinstance(result, list):
        raise LabelStudioError(where, f'the annotation\'s "result" must be a list, got {type(result).__name__}')
    spans: list[dict[str, Any]] = []
    controls: set[tuple[Any, Any]] = set()
    for r in result:
        if not isinstance(r, dict):
            raise LabelStudioError(where, f"a result item must be a JSON object, got {r!r}")
        rid = r.get("id")
        if r.get("type") != "labels":
            ignored[str(r.get("type"))] += 1
            continue
        if (from_name is not None and r.get("from_name") != from_name) or (to_name is not None and r.get("to_name") != to_name):
            ignored[f"labels from {r.get('from_name')!r} to {r.get('to_name')!r}"] += 1
            continue
        controls.add((r.get("from_name"), r.get("to_name")))
        v = r.get("value")
        if not isinstance(v, dict):
            raise LabelStudioError(where, f"region {rid!r} has no value object")
        start, end, labels = v.get("start"), v.get("end"), v.get("labels")
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
            raise LabelStudioError(where, f"region {rid!r}: start and end must be integers, got {start!r}, {end!r}")
        if end < start:
            raise LabelStudioError(where, f"region {rid!r}: end {end} is before start {start}")
        if end == start:
            raise LabelStudioError(where, f"region {rid!r}: empty span at {start}")
        if start < 0 or end > len(text):
            raise LabelStudioError(where, f"region {rid!r}: span ({start}, {end}) is off the text ({len(text)} characters)")
        if not isinstance(labels, list) or not labels:
            raise LabelStudioError(where, f"region {rid!r} ({start}, {end}) has no label")
        if len(labels) > 1:
            raise LabelStudioError(where, f"region {rid!r} ({start}, {end}) has {len(labels)} labels {labels}; one entity type per span")
        if not isinstance(labels[0], str) or not labels[0]:
            raise LabelStudioError(where, f"region {rid!r} ({start}, {end}): label must be a non-empty string, got {labels[0]!r}")
        said = v.get("text")
        if said is not None and said != text[start:end]:
            units = text.encode("utf-16-le")
            as_utf16 = units[2 * start : 2 * end].decode("utf-16-le", errors="replace")
            hint = " (the offsets look like UTF-16 code units, not code points)" if as_utf16 == said else ""
            raise LabelStudioError(where, f"region {rid!r}: says {said!r} but ({start}, {end}) covers {text[start:end]!r}{hint}")
        spans.append({"start": start, "end": end, "type": labels[0], "_id": rid})
    if len(controls) > 1:
        names = sorted(str(c) for c in controls)
        raise LabelStudioError(where, f"labels from several controls {names}; choose one with from_name / to_name")
    spans.sort(key=lambda s: (s["start"], s["end"]))
    for a, b in itertools.pairwise(spans):
        if b["start"] < a["end"]:
            raise LabelStudioError(
                where, f"regions {a['_id']!r} ({a['start']}, {a['end']}, {a['type']}) and {b['_id']!r} ({b['start']}, {b['end']}, {b['type']}) overlap"
            )
    return [{"start": s["start"], "end": s["end"], "type": s["type"]} for s in spans]


def read_export(
    path: str | Path,
    *,
    from_name: str | None = None,
    to_name: str | None = None,
    text_field: str = "text",
    image_field: str = "image",
    caption_field: str = "caption",
    unannotated: str = "skip",
) -> list[dict[str, Any]]:
    """The posts of a Label Studio JSON export, from the latest non-cancelled annotation of each task.

    A task with no annotation, or only cancelled (skipped) ones, is left out and counted in a
    warning that names the first ones (``unannotated="error"`` stops at the first instead): an
    export of a half-done project then trains on what was done. An annotation whose regions are
    all deleted is a post with no entity, kept. Result items of other controls (choices, image
    rectangles, relations) are counted in an info line. ``from_name`` / ``to_name`` pick one
    ``Labels`` control when the project has several. Any bad span raises :class:`LabelStudioError`
    naming the task ("export.json: task 12").
    """
    if unannotated not in UNANNOTATED_POLICIES:
        raise ConfigError(f"unannotated must be one of {UNANNOTATED_POLICIES}, got {unannotated!r}")
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(str(path), exc.lineno, f"not valid JSON ({exc.msg} at column {exc.colno}); expected a Label Studio JSON export") from None
    if not isinstance(tasks, list):
        raise DataFormatError(str(path), None, f"expected a Label Studio JSON export (a JSON array of tasks), got a {type(tasks).__name__}")
    records: list[dict[str, Any]] = []
    skipped: dict[str, list[Any]] = {"no annotation": [], "only cancelled annotations": []}
    ignored: Counter[str] = Counter()
    seen_ids: dict[Any, str] = {}
    for k, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise LabelStudioError(f"{path}: item {k}", f"expected a task (a JSON object), got {type(task).__name__}")
        task_id = task.get("id", f"#{k}")
        where = f"{path}: task {task_id}"
        data = task.get("data")
        if not isinstance(data, dict):
            raise LabelStudioError(where, 'expected a "data" object')
        text = data.get(text_field)
        if not isinstance(text, str):
            raise LabelStudioError(where, f'data has no string field "{text_field}" (the labelled text)')
        for key in (image_field, caption_field):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise LabelStudioError(where, f'data field "{key}" must be a string, got {type(data[key]).__name__}')
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            raise LabelStudioError(where, f'"annotations" must be a list, got {type(annotations).__name__}')
        ann = _latest(annotations, where)
        if ann is None:
            reason = "no annotation" if not annotations else "only cancelled annotations"
            if unannotated == "error":
                raise LabelStudioError(where, f"{reason} (unannotated='skip' leaves such tasks out)")
            skipped[reason].append(task_id)
            continue
        where_ann = f"{where} (annotation {ann.get('id')!r})"
        entities = _entities(ann.get("result", []), text, where_ann, from_name, to_name, ignored)
        post_id = data.get("id", task_id)
        if post_id in seen_ids:
            raise LabelStudioError(where, f"post id {post_id!r} is also the id of {seen_ids[post_id]}")
        seen_ids[post_id] = where
        records.append({
            "id": post_id, "text": text, "entities": entities,
            "image": data.get(image_field), "caption": data.get(caption_field), "_where": where,
        })  # fmt: skip
    for reason, ids in skipped.items():
        if ids:
            log.warning("%s: %d tasks left out (%s): task ids %s%s", path, len(ids), reason, ids[:10], " ..." if len(ids) > 10 else "")
    if ignored:
        log.info("%s: result items that are not text labels, not read: %s", path, dict(ignored))
    log.info("%s: %d posts, %d entities", path, len(records), sum(len(r["entities"]) for r in records))
    return records
