"""The feature cache: every image of a dataset extracted once, stored memory-mappable, resumable.

Layout of a cache directory::

    cache.json                 what made it: the extractor's identity and fingerprint, the inputs,
                               and (a corpus's cache) key_scheme "content-sha256"
    shard-00000.safetensors    tensors of up to ``shard_size`` images, keys "<IMGID>/<field>"
    shard-00000.json           the same images' records: status, error, sizes, labels, semantic words
    ...
    manifest.json              written last: counts (found, missing, unreadable, ...), objects per
                               image, semantic words per source, time; its presence = complete

A shard's JSON is renamed into place after its tensors, so a shard exists only when both do; an
interrupted run resumes from the finished shards without redoing their images. Reading opens
shards with ``safetensors.safe_open`` (memory-mapped) and loads one image's tensors on demand.
A cache made with other settings or model files is refused with the list of what differs.

Keys: a benchmark's cache (``--dataset``) and a folder's are keyed by IMGID (the file name); a
corpus's (``--corpus``, any format) by what each post's features are made of, its image file's
bytes and its caption (:func:`content_key`), so that posts need no IMGID, share entries when they
share an image and caption, and an edited image or caption is never answered with stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hamner.errors import CacheError, ImageError
from hamner.vision.extractor import FEATURE_FORMAT_VERSION, ImageFeatures, VisualExtractor, _canonical, fingerprint_of
from hamner.vision.images import LoadedImage

log = logging.getLogger(__name__)

HEADER = "cache.json"
MANIFEST = "manifest.json"
CACHE_FORMAT = "hamner-feature-cache"
#: the header's ``key_scheme`` of a cache keyed by content (``hamner preprocess --corpus``); a header
#: without one is keyed by IMGID (the benchmarks' caches, a folder's file names)
KEY_SCHEME_CONTENT = "content-sha256"
KEY_SCHEME_IMGID = "imgid"


@dataclass(frozen=True)
class ImageEntry:
    """One image to extract: its key (IMGID, or :func:`content_key`), file (None: no image file) and
    texts. ``no_image``: the post names no image at all (status "no_image", its caption/OCR words
    only, as ``hamner tag`` reads such a post); otherwise a None ``path`` is a missing image (a
    benchmark IMGID without a file: status "missing" under the on-bad-image policy)."""

    key: str
    path: Path | None
    caption: str | None = None
    ocr: str | None = None
    split: str | None = None
    no_image: bool = False


def content_key(image: Path | None, caption: str | None, ocr: str | None = None, hashes: dict[Path, str] | None = None) -> str:
    """The key of a post's visual inputs in a content-keyed cache: what its features are made of.

    ``img-<SHA-256 of the image file's bytes>`` (first 24 hex digits), ``lost-<SHA-256 of its
    resolved path>`` for an image named but not found, ``noimg`` for a post without image; then
    ``-txt-<SHA-256 of the caption and OCR text>`` when it has either. Posts sharing an image and a
    caption share one entry; an image or caption edited after ``hamner preprocess`` gives another
    key, so the cache no longer answers for that post (never stale features). ``hashes`` remembers
    each file's digest within a call (an image shared by many posts is read once)."""
    if image is None:
        key = "noimg"
    else:
        resolved = image.resolve()
        if resolved.is_file():
            if hashes is not None and resolved in hashes:
                digest = hashes[resolved]
            else:
                from hamner.hashing import file_sha256

                digest = file_sha256(resolved)
                if hashes is not None:
                    hashes[resolved] = digest
            key = f"img-{digest[:24]}"
        else:
            key = f"lost-{hashlib.sha256(str(resolved).encode()).hexdigest()[:24]}"
    if caption or ocr:
        text = json.dumps([caption or "", ocr or ""], ensure_ascii=False)
        key += f"-txt-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return key


def post_feature_keys(posts: Sequence[Any], file: Path, images: Path | None, ocr: dict[str, str] | None = None, hashes: dict[Path, str] | None = None) -> list[str]:
    """Each post's :func:`content_key`: its ``image`` (relative to the corpus ``file``'s folder) or
    its IMGID looked up in ``images``, and its caption (and OCR text by IMGID)."""
    from hamner.data.corpus import image_path

    hashes = {} if hashes is None else hashes
    out = []
    for p in posts:
        path, _ = image_path(p, file, images)
        out.append(content_key(path, p.caption, (ocr or {}).get(p.imgid) if p.imgid else None, hashes))
    return out


def corpus_entries(spec: Any, ocr: dict[str, str] | None = None) -> tuple[list[ImageEntry], dict[str, Any]]:
    """One entry per distinct :func:`content_key` of every post of a corpus (a
    :class:`hamner.data.corpus.CorpusSpec`: every split it has), and facts for the manifest."""
    from hamner.data.corpus import CORPUS_SPLITS, image_path, load_posts

    entries: dict[str, ImageEntry] = {}
    hashes: dict[Path, str] = {}
    facts: dict[str, Any] = {"posts": {}, "with_image": 0, "image_not_found": 0, "without_image": 0}
    for split in CORPUS_SPLITS:
        if split not in spec.files:
            continue
        posts = load_posts(spec, split)
        file = spec.file(split)
        facts["posts"][split] = len(posts)
        keys = post_feature_keys(posts, file, spec.images, ocr, hashes)
        for post, key in zip(posts, keys, strict=True):
            path, _ = image_path(post, file, spec.images)
            if path is None:
                facts["without_image"] += 1
            elif path.is_file():
                facts["with_image"] += 1
            else:
                facts["image_not_found"] += 1
                log.warning("%s: post %s: image %s not found (its caption words only)", post.source, post.id, path)
            if key not in entries:
                text_ocr = (ocr or {}).get(post.imgid) if post.imgid else None
                entries[key] = ImageEntry(
                    key, path if path is not None and path.is_file() else None, post.caption, text_ocr, split, no_image=path is None
                )
    facts["entries"] = len(entries)
    return list(entries.values()), facts


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def explain_difference(cached: dict[str, Any], current: dict[str, Any], limit: int = 12) -> str:
    """``settings.score_threshold: cache 0.4, now 0.5; ...``: what changed between two identities."""
    a, b = _flatten(cached), _flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: cache {a.get(key, '<absent>')!r}, now {b.get(key, '<absent>')!r}")
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"... and {len(diffs) - limit} more"]
    return "; ".join(diffs) if diffs else "(identities equal but fingerprints differ: the cache header was edited)"


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise CacheError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _shard_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard-*.json"))


def preprocess(
    entries: Sequence[ImageEntry],
    out_dir: str | os.PathLike[str],
    extractor: VisualExtractor,
    *,
    inputs: dict[str, Any] | None = None,
    shard_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
    prefetch: int = 8,
    stop_after: int | None = None,
    extra: dict[str, Any] | None = None,
    workers: int = 1,
    key_scheme: str | None = None,
) -> dict[str, Any]:
    """Extract every entry into ``out_dir`` (resuming a finished part); returns the manifest.

    ``workers`` images are decoded and extracted at once, each in its own thread (the models release
    the GIL; the detector lends each a net from its pool): on a machine of N cores, N workers of one thread
    each (:func:`hamner.vision.set_threads`) read more images per second than one worker of N
    threads. The features do not depend on it (up to the last bits of the thread count's effect).

    ``inputs`` describes where the entries came from (dataset, image folder, caption file); it is
    stored in the header and a resume with other inputs is refused. ``extra`` is added to the
    manifest as is. ``stop_after`` stops after that many shards (for tests of the resume path); the
    manifest is then not written and ``{}`` is returned. ``key_scheme``: how posts find their
    entry, stored in the header (:data:`KEY_SCHEME_CONTENT` for :func:`corpus_entries`; None: no
    field, keyed by IMGID, as every cache made before content keys).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    keys = [e.key for e in entries]
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    if dupes:
        raise CacheError(f"{len(dupes)} key(s) occur twice in the entries, e.g. {dupes[:3]}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CacheError(f"{out} exists and is not a directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    identity = extractor.identity()
    fingerprint = fingerprint_of(identity)
    header = {
        "format": CACHE_FORMAT,
        "format_version": FEATURE_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "identity": identity,
        "inputs": inputs or {},
        "keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "num_entries": len(entries),
    }
    if key_scheme is not None:
        header["key_scheme"] = key_scheme
    header_path = out / HEADER
    if header_path.exists() and overwrite:
        for p in [*out.glob("shard-*"), out / MANIFEST, header_path]:
            p.unlink(missing_ok=True)  # an interrupted cache has no manifest
    if header_path.exists():
        old = _read_json(header_path)
        if old.get("fingerprint") != header["fingerprint"]:
            raise CacheError(
                f"{out} holds features made with other settings (fingerprint {str(old.get('fingerprint'))[:12]} vs "
                f"{fingerprint[:12]}): {explain_difference(old.get('identity', {}), json.loads(_canonical(identity)))}. "
                "Use another --out, or --overwrite to rebuild it."
            )
        for field in ("inputs", "keys_sha256", "key_scheme"):
            if old.get(field) != header.get(field):
                raise CacheError(
                    f"{out} was started for other inputs ({field}: {explain_difference({field: old.get(field)}, {field: header.get(field)})}). "
                    "Use another --out, or --overwrite to rebuild it."
                )
    else:
        _write_json_atomic(header_path, header)
    (out / MANIFEST).unlink(missing_ok=True)

    done: set[str] = set()
    shard_files = _shard_paths(out)
    for p in shard_files:
        done.update(r["key"] for r in _read_json(p)["records"])
    todo = [e for e in entries if e.key not in done]
    next_index = 1 + max((int(p.stem.split("-")[1]) for p in shard_files), default=-1)
    if done:
        log.info("resuming %s: %d of %d images already extracted in %d shards", out, len(done), len(entries), len(shard_files))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc="preprocess", unit="img", disable=not progress)
    written = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hamner-extract" if workers > 1 else "hamner-decode") as pool:
        for start in range(0, len(todo), shard_size):
            if stop_after is not None and written >= stop_after:
                bar.close()
                return {}
            chunk = todo[start : start + shard_size]
            t0 = time.perf_counter()
            if workers > 1:
                feats = list(_extract_chunk_parallel(chunk, extractor, pool, max(prefetch, 2 * workers), bar))
            else:
                feats = list(_extract_chunk(chunk, extractor, pool, prefetch, bar))
            _write_shard(out, next_index, feats, time.perf_counter() - t0)
            next_index += 1
            written += 1
    bar.close()
    manifest = build_manifest(out, header, entries)
    manifest.update(extra or {})
    _write_json_atomic(out / MANIFEST, manifest)
    return manifest


def _load_or_error(extractor: VisualExtractor, entry: ImageEntry) -> LoadedImage | ImageError | None:
    if entry.path is None:
        return None
    try:
        return extractor.load(entry.path)
    except ImageError as exc:
        return exc


def _without_file(extractor: VisualExtractor, entry: ImageEntry) -> ImageFeatures:
    """An entry without an image file: a post that names none, or a missing image (the policy)."""
    if entry.no_image:
        return extractor.without_image(entry.key, "no_image", None, entry.caption, entry.ocr)
    missing = ImageError(entry.key, "missing", "no image file with this key in the image folder")
    return extractor.handle_bad_image(entry.key, missing, entry.caption, entry.ocr)


def _extract_chunk(
    chunk: Sequence[ImageEntry], extractor: VisualExtractor, pool: ThreadPoolExecutor, prefetch: int, bar: Any
) -> Iterator[ImageFeatures]:
    """Decode in a background thread (PIL releases the GIL) while the models run here."""
    pending: list[Future[LoadedImage | ImageError | None]] = []
    it = iter(chunk)
    queue: list[ImageEntry] = []
    for entry in it:
        pending.append(pool.submit(_load_or_error, extractor, entry))
        queue.append(entry)
        if len(pending) >= prefetch:
            break
    while pending:
        fut, entry = pending.pop(0), queue.pop(0)
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(_load_or_error, extractor, nxt))
            queue.append(nxt)
        loaded = fut.result()
        if loaded is None:
            feats = _without_file(extractor, entry)
        elif isinstance(loaded, ImageError):
            feats = extractor.handle_bad_image(entry.key, loaded, entry.caption, entry.ocr)
        else:
            feats = extractor.extract(loaded, key=entry.key, caption=entry.caption, ocr=entry.ocr)
        bar.update(1)
        yield feats


def _extract_entry(extractor: VisualExtractor, entry: ImageEntry) -> ImageFeatures:
    """Decode and extract one entry (a missing or bad image: the extractor's policy)."""
    loaded = _load_or_error(extractor, entry)
    if loaded is None:
        return _without_file(extractor, entry)
    if isinstance(loaded, ImageError):
        return extractor.handle_bad_image(entry.key, loaded, entry.caption, entry.ocr)
    return extractor.extract(loaded, key=entry.key, caption=entry.caption, ocr=entry.ocr)


def _extract_chunk_parallel(
    chunk: Sequence[ImageEntry], extractor: VisualExtractor, pool: ThreadPoolExecutor, window: int, bar: Any
) -> Iterator[ImageFeatures]:
    """Entries decoded and extracted in the pool's threads, at most ``window`` at a time, yielded
    in the chunk's order (an error, with the on-bad-image policy "error", is raised in order too)."""
    pending: list[Future[ImageFeatures]] = []
    it = iter(chunk)
    for entry in it:
        pending.append(pool.submit(_extract_entry, extractor, entry))
        if len(pending) >= window:
            break
    try:
        while pending:
            feats = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_extract_entry, extractor, nxt))
            bar.update(1)
            yield feats
    finally:
        for fut in pending:
            fut.cancel()


def _write_shard(out: Path, index: int, feats: Sequence[ImageFeatures], seconds: float) -> None:
    from safetensors.torch import save_file

    stem = f"shard-{index:05d}"
    tensors = {f"{f.key}/{name}": t for f in feats for name, t in f.tensors().items()}
    tmp = out / f"{stem}.safetensors.part"
    save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT})
    os.replace(tmp, out / f"{stem}.safetensors")
    _write_json_atomic(out / f"{stem}.json", {"records": [f.record() for f in feats], "time_s": round(seconds, 3)})


def build_manifest(out: Path, header: dict[str, Any], entries: Sequence[ImageEntry]) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    total_time = 0.0
    shards = []
    for p in _shard_paths(out):
        shard = _read_json(p)
        records.extend(shard["records"])
        total_time += float(shard.get("time_s", 0.0))
        shards.append(p.stem)
    status = Counter(r["status"] for r in records)
    objects = Counter(r["num_objects"] for r in records if r["status"] == "ok")
    sources: Counter[str] = Counter()
    posts_with: Counter[str] = Counter()
    for r in records:
        srcs = r["semantic"]["sources"]
        sources.update(srcs)
        posts_with.update(set(srcs))
    found = status.get("ok", 0)
    env = _environment()
    return {
        "format": CACHE_FORMAT,
        "fingerprint": header["fingerprint"],
        "inputs": header["inputs"],
        **({"key_scheme": header["key_scheme"]} if "key_scheme" in header else {}),
        "counts": {
            "entries": len(entries),
            "images_found": found,
            "missing": status.get("missing", 0),
            "unreadable": status.get("unreadable", 0),
            "truncated": status.get("truncated", 0),
            "too_large": status.get("too_large", 0),
            "no_image": status.get("no_image", 0),
        },
        "objects_per_image": {
            "mean": round(sum(n * c for n, c in objects.items()) / found, 3) if found else 0.0,
            "histogram": {str(n): objects[n] for n in sorted(objects)},
        },
        "semantic_words": {"by_source": dict(sorted(sources.items())), "posts_with_source": dict(sorted(posts_with.items()))},
        "time_s": round(total_time, 3),
        "shards": shards,
        "settings": header["identity"]["settings"],
        "environment": env,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _environment() -> dict[str, Any]:
    import torch

    from hamner import __version__
    from hamner.env import git_revision, machine_description

    return {
        "hamner": __version__,
        "git": git_revision(),
        "machine": machine_description(torch.device("cpu")),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


class FeatureStore:
    """Read access to a finished cache: ``store[imgid] -> ImageFeatures`` (tensors memory-mapped)."""

    def __init__(self, directory: Path, header: dict[str, Any], manifest: dict[str, Any], index: dict[str, tuple[str, dict[str, Any]]]) -> None:
        self.directory = directory
        self.header = header
        self.manifest = manifest
        self._index = index
        self._handles: dict[str, Any] = {}  # shard stem -> open safe_open handle (memory-mapped)
        self._names: dict[str, set[str]] = {}  # shard stem -> tensor keys in it

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        expect: VisualExtractor | dict[str, Any] | None = None,
    ) -> FeatureStore:
        """Open a complete cache; with ``expect`` (an extractor or its identity) refuse a stale one."""
        d = Path(directory)
        if not (d / HEADER).exists():
            raise CacheError(f"{d}: not a feature cache (no {HEADER}); make one with 'hamner preprocess'")
        header = _read_json(d / HEADER)
        if header.get("format") != CACHE_FORMAT:
            raise CacheError(f"{d / HEADER}: format {header.get('format')!r}, expected {CACHE_FORMAT!r}")
        if not (d / MANIFEST).exists():
            raise CacheError(f"{d}: incomplete (no {MANIFEST}); run the same 'hamner preprocess' command again to finish it")
        if expect is not None:
            identity = json.loads(_canonical(expect.identity() if isinstance(expect, VisualExtractor) else expect))
            if header.get("fingerprint") != fingerprint_of(identity):
                raise CacheError(
                    f"{d}: stale feature cache, made with other settings or model files: "
                    f"{explain_difference(header.get('identity', {}), identity)}. Rebuild it with 'hamner preprocess' and these settings."
                )
        manifest = _read_json(d / MANIFEST)
        index: dict[str, tuple[str, dict[str, Any]]] = {}
        for p in _shard_paths(d):
            for record in _read_json(p)["records"]:
                index[record["key"]] = (p.stem, record)
        return cls(d, header, manifest, index)

    @property
    def fingerprint(self) -> str:
        return str(self.header["fingerprint"])

    @property
    def key_scheme(self) -> str:
        """How a post finds its entry: :data:`KEY_SCHEME_IMGID` (its IMGID) or
        :data:`KEY_SCHEME_CONTENT` (:func:`post_feature_keys`)."""
        return str(self.header.get("key_scheme", KEY_SCHEME_IMGID))

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def record(self, key: str) -> dict[str, Any]:
        try:
            return self._index[key][1]
        except KeyError:
            raise KeyError(f"{key!r} is not in the feature cache {self.directory}") from None

    def __getitem__(self, key: str) -> ImageFeatures:
        record = self.record(key)
        stem = self._index[key][0]
        handle = self._handles.get(stem)
        if handle is None:
            from safetensors import safe_open

            path = self.directory / f"{stem}.safetensors"
            if not path.exists():
                raise CacheError(f"{path}: missing (the cache is damaged; rebuild it with --overwrite)")
            handle = self._handles[stem] = safe_open(str(path), framework="pt")
        prefix = f"{key}/"
        tensors = {}
        for name in ImageFeatures.TENSOR_FIELDS:
            full = prefix + name
            if full in self._tensor_names(stem, handle):
                tensors[name] = handle.get_tensor(full)
        return ImageFeatures.from_parts(record, tensors)

    def _tensor_names(self, stem: str, handle: Any) -> set[str]:
        if stem not in self._names:
            self._names[stem] = set(handle.keys())
        return self._names[stem]


def dataset_entries(
    dataset: str,
    images_dir: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    captions: dict[str, str] | None = None,
    ocr: dict[str, str] | None = None,
) -> tuple[list[ImageEntry], dict[str, Any]]:
    """One entry per IMGID of every split, with ``<images_dir>/<IMGID>.<ext>`` when that file exists.

    Returns the entries and facts for the manifest (files in the folder that match no IMGID,
    IMGIDs without a caption).
    """
    from hamner.data.datasets import SPLITS, load_split

    folder = Path(images_dir)
    if not folder.is_dir():
        raise CacheError(f"--images {folder}: not a directory")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            # <IMGID>.jpg wins over another file with the same stem
            if p.stem not in files or p.suffix.lower() == ".jpg":
                files[p.stem] = p
    entries: list[ImageEntry] = []
    for split in SPLITS:
        for post in load_split(dataset, split, data_root):
            if post.imgid is None:
                raise CacheError(f"{dataset} {split}: a post without an IMGID line (post {post.source}); images are keyed by IMGID")
            entries.append(
                ImageEntry(
                    key=post.imgid,
                    path=files.get(post.imgid),
                    caption=(captions or {}).get(post.imgid),
                    ocr=(ocr or {}).get(post.imgid),
                    split=split,
                )
            )
    keys = {e.key for e in entries}
    unused = sorted(set(files) - keys)
    placeholder = _release_missing(dataset, data_root) & {e.key for e in entries if e.caption}
    facts = {
        "image_files_in_folder": len(files),
        "image_files_matching_no_imgid": len(unused),
        "examples_matching_no_imgid": unused[:5],
        "imgids_without_caption": sum(1 for e in entries if captions is not None and e.caption is None),
        "captions_of_images_missing_from_the_release": len(placeholder),
    }
    if placeholder:
        log.info(
            "%d captions belong to IMGIDs whose image is missing from the official release (image_manifest.tsv); "
            "they describe the release's placeholder image, not the tweet's. They are kept, as published systems "
            "used them; filter them out in your own caption file if you do not want them",
            len(placeholder),
        )
    if unused:
        log.warning("%d file(s) in %s match no %s IMGID (e.g. %s); they are not extracted", len(unused), folder, dataset, unused[:3])
    return entries, facts


def _release_missing(dataset: str, data_root: str | os.PathLike[str] | None) -> set[str]:
    """IMGIDs that the data folder's ``image_manifest.tsv`` marks as missing from the official image release."""
    from hamner.data.datasets import get_spec, resolve_data_root

    path = resolve_data_root(data_root) / get_spec(dataset).folder / "image_manifest.tsv"
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if "imgid" not in header or "release_image" not in header:
        log.warning("%s: no imgid/release_image columns; placeholder captions are not counted", path)
        return set()
    i, r = header.index("imgid"), header.index("release_image")
    return {cols[i] for cols in (line.split("\t") for line in lines[1:] if line) if len(cols) > r and cols[r] == "missing"}


def folder_entries(images_dir: str | os.PathLike[str], captions: dict[str, str] | None = None, ocr: dict[str, str] | None = None) -> list[ImageEntry]:
    """One entry per file of a folder, keyed by the file name without its extension."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise CacheError(f"--images {folder}: not a directory")
    entries = []
    seen: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.stem in seen:
            raise CacheError(f"{folder}: two files share the key {p.stem!r} ({seen[p.stem].name}, {p.name})")
        seen[p.stem] = p
        entries.append(ImageEntry(p.stem, p, (captions or {}).get(p.stem), (ocr or {}).get(p.stem)))
    return entries
