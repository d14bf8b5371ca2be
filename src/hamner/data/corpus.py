"""Corpora by path: a folder of train / dev / test files, or files named one by one, in any format
of :mod:`hamner.data.formats`; the two benchmarks are named presets of the same thing.

A :class:`CorpusSpec` says where a corpus's files are and how to read them (format, tag scheme, type
map, declared label set, images folder, captions). :func:`load_posts` reads one split into BIO posts;
:func:`label_types` gives the label set (the types of the training split, or the declared list);
:func:`check_corpus` reads every split and reports counts and every problem (``hamner data check``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hamner.data.conll import Post, read_captions
from hamner.data.formats import FORMATS, SCHEMES, Problems, TagReport, normalise, read_raw
from hamner.data.labels import ENTITY_TYPES, spans_from_bio
from hamner.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "HAMNER_DATA_ROOT"
CORPUS_SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: file stems accepted for each split in a corpus folder
SPLIT_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "dev": ("dev", "valid", "validation", "val"),
    "test": ("test", "testing"),
}
#: file extensions accepted in a corpus folder ("" = none)
EXTENSIONS: tuple[str, ...] = (
    "",
    ".txt",
    ".conll",
    ".tsv",
    ".bio",
    ".iob",
    ".iob2",
    ".bioes",
    ".jsonl",
    ".ndjson",
    ".json",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")


def canonical_split(split: str) -> str:
    """train, dev or test (``valid``/``validation``/``val`` mean dev)."""
    for name, stems in SPLIT_STEMS.items():
        if split in stems:
            return name
    raise ConfigError(f"unknown split {split!r}; expected train, dev (or valid) or test")


@dataclass(frozen=True)
class Preset:
    """A named corpus under the data root (``data.dataset: twitter2017``)."""

    name: str
    folder: str
    format: str = "imgid"
    tag_scheme: str = "bio"  # the benchmarks' orphan I- tags are kept as the gold has them
    labels: tuple[str, ...] = ENTITY_TYPES  # this order is the label index order of every benchmark checkpoint
    type_map: Mapping[str, str] = field(default_factory=lambda: {"OTHER": "MISC"})
    tokenizer_style: str = "twitter2017"
    captions: str | None = "blip2_captions.txt"
    images: str | None = None  # the official image folders are not in the data root


PRESETS: dict[str, Preset] = {
    "twitter2015": Preset("twitter2015", "twitter2015", tokenizer_style="twitter2015"),
    "twitter2017": Preset("twitter2017", "twitter2017", tokenizer_style="twitter2017"),
}


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the explicit value (flag or config) if given, else ``$HAMNER_DATA_ROOT``."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_ROOT_ENV)
    if not value:
        raise ConfigError(
            f"no data root: pass --data-root DIR, set data.root in the config, or export {DATA_ROOT_ENV}=DIR "
            "(the folder holding twitter2015/ and twitter2017/)"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a directory")
    return root


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus's files are and how to read them."""

    name: str
    files: Mapping[str, Path]  # split (train, dev, test) -> file; a split may be absent
    format: str = "auto"  # auto | imgid | conll | jsonl | labelstudio
    tag_scheme: str = "auto"  # auto | bio | iob1 | bioes
    labels: tuple[str, ...] | None = None  # declared entity types (their order is the label order); None: from the data
    type_map: Mapping[str, str] = field(default_factory=dict)  # a file's type -> the model's ("O": dropped)
    tokenizer_style: str = "twitter2017"  # how a JSONL post's text is cut into words
    images: Path | None = None  # where an IMGID's image is looked up (<images>/<IMGID>.jpg ...)
    captions: Path | None = None  # a caption file (<IMGID>.jpg :caption), for posts without their own
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.tag_scheme not in SCHEMES:
            raise ConfigError(f"data.tag_scheme must be one of {', '.join(SCHEMES)}, got {self.tag_scheme!r}")
        if self.labels is not None:
            bad = [t for t in self.labels if not t or "-" in t[:2] or t == "O" or t != t.strip()]
            if bad or len(set(self.labels)) != len(self.labels) or not self.labels:
                raise ConfigError(
                    f"data.labels must be distinct type names such as PER (no B-/I-, not O), got {list(self.labels)}"
                )

    def file(self, split: str) -> Path:
        split = canonical_split(split)
        if split not in self.files:
            raise ConfigError(
                f"corpus {self.name}: no {split} file (give data.{split}, or a folder with a {split} file)"
            )
        return self.files[split]


def split_files(folder: Path, skip: Iterable[str] = ()) -> dict[str, Path]:
    """A corpus folder's split files: ``train``, ``dev`` (or ``valid``, ``validation``, ``val``)
    and ``test``, each with one of :data:`EXTENSIONS`; two candidates for one split are an error
    (unless the split is in ``skip``: named one by one)."""
    if not folder.is_dir():
        raise ConfigError(
            f"corpus folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
        )
    out: dict[str, Path] = {}
    for split, stems in SPLIT_STEMS.items():
        found = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and any(p.name.lower() == s + e for s in stems for e in EXTENSIONS)
        )
        if len(found) > 1 and split not in skip:
            raise ConfigError(
                f"{folder}: several {split} files ({', '.join(p.name for p in found)}); name them one by one with data.{split}"
            )
        if found:
            out[split] = found[0]
    if not out and not skip:
        raise ConfigError(
            f"{folder}: no train, dev (or valid) or test file (names such as train.txt, dev.conll, test.jsonl); "
            "or name the files with data.train, data.dev and data.test"
        )
    return out


def _existing(path: str | os.PathLike[str], root: str | os.PathLike[str] | None, what: str) -> Path:
    """``path`` as given, or, when relative and not there, under the data root."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    value = root if root not in (None, "") else os.environ.get(DATA_ROOT_ENV)
    if value and (Path(value) / p).exists():
        return Path(value) / p
    raise ConfigError(f"{what} {path} not found (relative paths are read from here, then from the data root)")


def corpus_spec(
    dataset: str | None = None,
    path: str | os.PathLike[str] | None = None,
    files: Mapping[str, str | os.PathLike[str] | None] | None = None,
    root: str | os.PathLike[str] | None = None,
    format: str = "auto",
    tag_scheme: str = "auto",
    labels: Iterable[str] | None = None,
    type_map: Mapping[str, str] | None = None,
    images: str | os.PathLike[str] | None = None,
    captions: str | os.PathLike[str] | None = None,
    tokenizer_style: str | None = None,
) -> CorpusSpec:
    """A corpus from a preset name (``dataset``), a folder (``path``; a file there is one split:
    ``test``) or files named one by one (``files``: split -> file, overriding the folder's). A
    preset's settings are defaults: each given one replaces it, ``type_map`` is merged over its."""
    named = {canonical_split(k): v for k, v in (files or {}).items() if v not in (None, "")}
    settings: dict[str, Any] = {"format": format, "tag_scheme": tag_scheme}
    if path in (None, "") and not named:
        name = dataset or "twitter2017"
        if name not in PRESETS:
            raise ConfigError(
                f"unknown dataset {name!r}; known presets: {sorted(PRESETS)}; for a corpus of your own give "
                "data.path (a folder with train/dev/test files) or data.train, data.dev and data.test"
            )
        preset = PRESETS[name]
        folder = resolve_data_root(root) / preset.folder
        found = split_files(folder)
        spec = CorpusSpec(
            name, found, preset.format, preset.tag_scheme, preset.labels, dict(preset.type_map), preset.tokenizer_style,
            folder / preset.images if preset.images else None,
            folder / preset.captions if preset.captions and (folder / preset.captions).exists() else None, name,
        )  # fmt: skip
        settings = {k: v for k, v in settings.items() if v != "auto"}
    else:
        found = {}
        where: Path | None = None
        if path not in (None, ""):
            where = _existing(path, root, "data.path")
            found = split_files(where, named) if where.is_dir() else {"test": where}
        found.update({k: _existing(v, root, f"data.{k}") for k, v in named.items()})  # type: ignore[arg-type]
        if where is None:
            where = next(iter(found.values())).parent
        name = dataset or (where.name if where.is_dir() else where.stem)
        spec = CorpusSpec(name, found)
    if labels is not None:
        settings["labels"] = tuple(labels)
    if type_map:
        settings["type_map"] = {**spec.type_map, **type_map}
    if images not in (None, ""):
        settings["images"] = _existing(images, root, "data.images")  # type: ignore[arg-type]
    if captions not in (None, ""):
        settings["captions"] = _existing(captions, root, "data.captions")  # type: ignore[arg-type]
    if tokenizer_style and spec.preset is None:
        settings["tokenizer_style"] = tokenizer_style
    return replace(spec, **settings)


@dataclass
class SplitRead:
    """One split as read: its posts, what happened to its tags, the format it was read in."""

    posts: list[Post]
    tags: TagReport
    format: str
    file: Path


def read_split(spec: CorpusSpec, split: str, problems: Problems) -> SplitRead:
    """Read one split, collecting problems (nothing raised for bad lines: see :func:`load_posts`)."""
    path = spec.file(split)
    raw, fmt = read_raw(path, spec.format, problems, spec.tokenizer_style)
    posts, report = normalise(raw, problems, spec.tag_scheme, spec.type_map, spec.labels)
    captions = read_captions(spec.captions) if spec.captions is not None else {}
    for p in posts:
        if p.caption is None and p.imgid is not None and p.imgid in captions:
            p.caption = captions[p.imgid]
    if not posts and not problems.errors:
        problems.error(str(path), None, f"the {canonical_split(split)} split has no posts")
    return SplitRead(posts, report, fmt, path)


def load_posts(spec: CorpusSpec, split: str) -> list[Post]:
    """One split's posts; any error in the file raises :class:`DataFormatError` listing them
    (file:line each). Warnings (a span widened to whole words) are logged."""
    problems = Problems()
    got = read_split(spec, split, problems)
    for w in problems.warnings:
        log.warning("%s", w)
    problems.raise_errors()
    t = got.tags
    if t.converted or t.dropped or t.renamed:
        log.info(
            "%s: %s tags, %d converted to BIO%s%s", got.file, t.scheme.upper(), t.converted,
            "".join(f", {n} {k} renamed" for k, n in sorted(t.renamed.items())),
            "".join(f", {n} {k} dropped" for k, n in sorted(t.dropped.items())),
        )  # fmt: skip
    return got.posts


def entity_counts(posts: Iterable[Post]) -> Counter[str]:
    """Gold entities per type (conlleval reading)."""
    return Counter(s.type for p in posts for s in spans_from_bio(p.tags))


def label_types(spec_labels: Iterable[str] | None, train: list[Post], where: str) -> tuple[str, ...]:
    """The label set: the declared types (in their order), or the types of the training posts
    (sorted). An empty training split, or one without any entity, is an error."""
    if not train:
        raise DataFormatError(where, None, "the training split has no posts")
    seen = entity_counts(train)
    if not seen:
        raise DataFormatError(where, None, f"the training split ({len(train)} posts) has no entity: nothing to learn")
    if spec_labels is not None:
        declared = tuple(spec_labels)
        missing = [t for t in declared if t not in seen]
        if missing:
            log.warning(
                "%s: declared types %s have no entity in the training split; the model will never predict them",
                where,
                missing,
            )
        return declared
    return tuple(sorted(seen))


def unseen_types(types: Iterable[str], posts: Iterable[Post]) -> Counter[str]:
    """Gold entities of ``posts`` whose type is not in ``types``: entities the model cannot find."""
    known = set(types)
    return Counter({t: n for t, n in entity_counts(posts).items() if t not in known})


def warn_unseen(types: Iterable[str], posts: list[Post], what: str) -> None:
    """Log the gold entities of ``posts`` (a dev or test split, a gold file) of types outside the label set."""
    lost = unseen_types(types, posts)
    for t, n in sorted(lost.items()):
        log.warning(
            "%s: type %s is not in the model's label set (%s): its %d gold entities will count as missed",
            what,
            t,
            ", ".join(types),
            n,
        )


def image_path(post: Post, file: Path, images: Path | None) -> tuple[Path | None, str]:
    """A post's image and how it was found: ``image`` relative to the corpus file's folder, or the
    IMGID looked up in the images folder; ("none" when the post names no image)."""
    if post.image:
        p = Path(post.image)
        return (p if p.is_absolute() else file.parent / p), "image"
    if post.imgid is not None and images is not None:
        for ext in IMAGE_EXTENSIONS:
            cand = images / f"{post.imgid}{ext}"
            if cand.exists():
                return cand, "imgid"
        return images / f"{post.imgid}.jpg", "imgid"
    return None, "none"


@dataclass
class CorpusReport:
    """What ``hamner data check`` prints: per split counts, the label set, every problem."""

    name: str
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    problems: Problems = field(default_factory=Problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.name,
            "labels": list(self.labels),
            "splits": self.splits,
            "problems": [{"level": p.level, "where": p.where, "message": p.message} for p in self.problems.in_order()],
        }

    def text(self) -> str:
        lines = [f"corpus {self.name}: label set {', '.join(self.labels) or '(none)'}"]
        types = sorted(
            {t for s in self.splits.values() for t in s["entities"]}, key=lambda t: (t not in self.labels, t)
        )
        head = (
            f"{'split':<6}{'posts':>8}{'tokens':>9}"
            + "".join(f"{t[:8]:>9}" for t in types)
            + f"{'images':>10}{'missing':>9}"
        )
        lines.append(head)
        for split, s in self.splits.items():
            ents = "".join(f"{s['entities'].get(t, 0):>9}" for t in types)
            lines.append(
                f"{split:<6}{s['posts']:>8}{s['tokens']:>9}{ents}{s['images_found']:>10}{s['images_missing']:>9}"
            )
        for split, s in self.splits.items():
            lines.append(
                f"{split}: {s['file']} ({s['format']}, {s['tags']['scheme'].upper()} tags{_tag_notes(s['tags'])})"
            )
        errors, warnings = len(self.problems.errors), len(self.problems.warnings)
        lines += [str(p) for p in self.problems.in_order()]
        lines.append(f"{errors} error(s), {warnings} warning(s)")
        return "\n".join(lines)


def _tag_notes(t: dict[str, Any]) -> str:
    notes = []
    if t["converted"]:
        notes.append(f"{t['converted']} converted to BIO")
    if t["orphan_i"]:
        notes.append(f"{t['orphan_i']} I- tags continue no entity (read as conlleval reads them)")
    notes += [f"{n} {k} renamed" for k, n in sorted(t["renamed"].items())]
    notes += [f"{n} {k} dropped" for k, n in sorted(t["dropped"].items())]
    return ": " + ", ".join(notes) if notes else ""


def check_corpus(spec: CorpusSpec) -> CorpusReport:
    """Read every split of ``spec`` without training: counts, images found and missing, the label
    set, and every problem (a type of dev or test unseen in training, with the entities it costs;
    an empty split; a training split without entities)."""
    report = CorpusReport(spec.name)
    read: dict[str, list[Post]] = {}
    for split in CORPUS_SPLITS:
        if split not in spec.files:
            continue
        try:
            got = read_split(spec, split, report.problems)
        except DataFormatError as exc:  # the file as a whole (missing, not UTF-8)
            report.problems.error(exc.path, exc.line, exc.detail)
            continue
        read[split] = got.posts
        found = missing = 0
        for p in got.posts:
            img, how = image_path(p, got.file, spec.images)
            if img is None:
                continue
            if img.exists():
                found += 1
            else:
                missing += 1
                if how == "image":
                    report.problems.warning(
                        p.source.rsplit(":", 1)[0] if ":" in p.source else p.source,
                        _line(p.source),
                        f"post {p.id}: image {img} not found",
                    )
        report.splits[split] = {
            "file": str(got.file), "format": got.format, "posts": len(got.posts), "tokens": sum(len(p.words) for p in got.posts),
            "entities": dict(sorted(entity_counts(got.posts).items())), "images_found": found, "images_missing": missing,
            "captions": sum(1 for p in got.posts if p.caption),
            "tags": {"scheme": got.tags.scheme, "converted": got.tags.converted, "orphan_i": got.tags.orphan_i,
                     "renamed": dict(got.tags.renamed), "dropped": dict(got.tags.dropped)},
        }  # fmt: skip
    train = read.get("train")
    if "train" not in spec.files:
        report.problems.warning(
            spec.name, None, "no training split: a model cannot be trained on this corpus (evaluate only)"
        )
        report.labels = tuple(spec.labels or sorted({t for ps in read.values() for t in entity_counts(ps)}))
    elif train is not None:
        try:
            report.labels = label_types(spec.labels, train, str(spec.files["train"]))
        except DataFormatError as exc:
            report.problems.error(exc.path, exc.line, exc.detail)
    if train:
        for split in ("dev", "test"):
            for t, n in sorted(unseen_types(report.labels, read.get(split, [])).items()):
                report.problems.warning(
                    str(spec.files[split]),
                    None,
                    f"type {t} is not in the training split: its {n} gold entities will count as missed",
                )
    return report


def _line(source: str) -> int | None:
    tail = source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None
