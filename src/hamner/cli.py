"""One entry point: ``hamner <command>``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hamner import __version__
from hamner.errors import ConfigError, HamnerError
from hamner.inference import DEFAULT_MAX_WORDS

if TYPE_CHECKING:
    from hamner.evaluation.metrics import EntityReport

log = logging.getLogger("hamner")
FORMAT_CHOICES = (
    "auto",
    "imgid",
    "conll",
    "jsonl",
    "labelstudio",
)  # hamner.data.formats.FORMATS (not imported at start)


class _OwnLinesOnly(logging.Filter):
    """What a command shows without ``--verbose``: hamner's own records and other libraries' errors.
    Their INFO and WARNING records are noise to the user: ONNX Runtime's quantiser logs every MatMul it
    leaves alone on the root logger, torch.onnx warns about what tracing fixes (TracerWarning), a
    library warns about a deprecation in another."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name == "hamner" or record.name.startswith("hamner.")


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(
        level=level if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ours = [h for h in root.handlers if h not in before]  # none where the caller (a test runner) set up logging
    if ours:
        # Python warnings become records of the logger "py.warnings": shown, like other libraries'
        # records, with --verbose only (hamner itself warns through its loggers)
        logging.captureWarnings(True)
        if not verbose:
            for handler in ours:
                handler.addFilter(_OwnLinesOnly())


def cmd_train(args: argparse.Namespace) -> int:
    from hamner.training.config import load_config
    from hamner.training.trainer import run_training

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg = load_config(args.config, overrides)
    command = args.command_line
    final = run_training(cfg, resume=args.resume, command=command, stop_after_epoch=args.stop_after_epoch)
    if final:
        print(f"test F1 {final['test_f1']:.4f} (best dev epoch {final['best_epoch']}); run: {cfg.run_dir()}")
    return 0


@dataclass
class Evaluation:
    """What ``hamner evaluate`` computes, before it is printed: ``answer`` is its ``--json`` output."""

    answer: dict[str, Any]
    report: EntityReport
    n_posts: int
    multimodal: bool
    dropped_types: set[str]


def evaluate_checkpoint(args: argparse.Namespace) -> Evaluation:
    """The scores of ``hamner evaluate`` (``args`` parsed by :func:`build_parser`), computed in this
    process without printing them: scripts that score many checkpoints call it with the command's
    own arguments, so each of their rows is exactly what that command line prints."""
    import json
    from collections import Counter

    import torch

    from hamner.data.corpus import corpus_spec, entity_counts, load_posts, warn_unseen
    from hamner.data.labels import keep_types, spans_from_bio
    from hamner.evaluation.metrics import entity_scores
    from hamner.evaluation.predictions import write_predictions
    from hamner.inference.tagger import load_model
    from hamner.precision import autocast, resolve_precision
    from hamner.training.trainer import visual_inputs
    from hamner.vision.cache import FeatureStore

    model = load_model(args.model)
    metas = [json.loads((Path(m) / "hamner_config.json").read_text()) for m in args.model]
    meta = metas[0]
    trained_on = {m.get("trained_on") for m in metas}
    # the checkpoint's own type map (older checkpoints: the benchmarks' OTHER -> MISC) unless --type-map says otherwise
    type_map = {**meta.get("type_map", {"OTHER": "MISC"}), **_pairs(args.type_map, "--type-map")}
    type_map = {k: "O" if type_map.get(v) == "O" else v for k, v in type_map.items()}  # OTHER -> MISC -> O
    if args.gold:
        if args.dataset:
            raise ConfigError("--gold and --dataset exclude each other")
        spec = corpus_spec(
            None,
            files={"test": args.gold},
            format=args.format,
            type_map=type_map,
            tokenizer_style=model.config.tokenizer_style,
            images=args.images,
            captions=args.captions,
        )
        dataset, split = args.gold, "test"
    else:
        dataset = args.dataset or (meta.get("trained_on") if len(trained_on) == 1 else None)
        if not dataset:
            raise ConfigError(
                f"{' '.join(args.model)}: no single dataset they were trained on is recorded; pass --dataset or --gold"
            )
        from hamner.data.corpus import PRESETS

        preset = dataset in PRESETS and not Path(dataset).exists()
        spec = corpus_spec(dataset if preset else None, None if preset else dataset, root=args.data_root, format=args.format,
                           type_map=type_map, tokenizer_style=model.config.tokenizer_style, images=args.images,
                           captions=args.captions)  # fmt: skip
        split = args.split
    name = " + ".join(args.model)
    posts = load_posts(spec, split)
    types = [label[2:] for label in model.config.labels if label.startswith("B-")]
    warn_unseen(types, posts, f"{dataset} {split}")
    visuals = None
    if model.config.multimodal:
        if args.features is None and not args.text_path:
            raise ConfigError(
                f"{name} is a multimodal model ({meta.get('model_class')}): pass --features DIR, the "
                f"{dataset} feature cache made by 'hamner preprocess' (training read its config's data.features), "
                "or --text-path to score its text path alone"
            )
        if args.features is not None:
            if args.text_path:
                raise ConfigError("--features and --text-path exclude each other")
            store = FeatureStore.open(args.features)
            want = model.config.vision_fingerprint
            if want is not None and store.fingerprint != want:
                raise ConfigError(
                    f"{args.features}: feature cache made by another image extractor (fingerprint "
                    f"{store.fingerprint[:12]}) than the one {name} was trained with ({want[:12]})"
                )
            visuals = visual_inputs(posts, store, spec.file(split), spec.images)
    elif args.features is not None or args.text_path:
        raise ConfigError(f"{name} is a text-only model: --features and --text-path are for a multimodal one")
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    shown = precision
    from hamner.inference.onnx import is_exported_model

    if is_exported_model(model):
        if precision != "fp32":
            raise ConfigError(
                f"{name} is an exported (ONNX) model: its precision is fixed at export; drop --precision {args.precision}"
            )
        shown = f"onnx-{model.precision}"
    model.to(device)
    with autocast(device, precision):
        preds = model.run([p.words for p in posts], visuals, args.batch_size, progress=True, desc=args.split)
    # a type the map drops (MISC=O) is left out of the predictions too: the shared types are scored
    dropped_types = {k for k, v in type_map.items() if v == "O"} & set(types)
    pred_tags, not_scored = [p.tags for p in preds], Counter[str]()
    if dropped_types:
        for i, tags in enumerate(pred_tags):
            pred_tags[i], gone = keep_types(tags, [t for t in types if t not in dropped_types])
            not_scored.update(gone)
        log.info(
            "not scored (gold and predictions): %s; %d predicted entities of them left out",
            ", ".join(sorted(dropped_types)), sum(not_scored.values()),
        )  # fmt: skip
    gold_types = entity_counts(posts)
    predicted = Counter(s.type for tags in pred_tags for s in spans_from_bio(tags))
    for t in types:
        if t not in gold_types and predicted[t]:
            log.warning(
                "%s %s has no %s entity: the model's %d %s predictions count as false positives "
                "(to score the types both share, pass --type-map %s=O)", dataset, split, t, predicted[t], t, t,
            )  # fmt: skip
    # the per-type rows: every scored type of the checkpoint, in its label order, then any gold type it lacks
    scored = [t for t in types if t not in dropped_types]
    report = entity_scores([p.tags for p in posts], pred_tags, mode=args.mode, types=scored)
    if args.predictions:
        out = write_predictions(args.predictions, posts, pred_tags, [p.relevance for p in preds])
        log.info("predictions of %d posts written to %s", len(posts), out)
    if not model.config.multimodal:
        source = "none (a text-only model)"
    else:
        source = args.features if visuals is not None else "none (the text path only, --text-path)"
    answer = {
        "dataset": dataset, "split": split, "visual_input": source, "precision": shown, **report.to_dict(),
        **({"not_scored": dict(sorted(not_scored.items()))} if dropped_types else {}),
    }  # fmt: skip
    return Evaluation(answer, report, len(posts), model.config.multimodal, dropped_types)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    got = evaluate_checkpoint(args)
    if args.json:
        print(json.dumps(got.answer, indent=2))
    else:
        what = f"{got.answer['dataset']} {got.answer['split']}"
        print(f"{what}: {got.n_posts} posts, entity-level ({got.report.mode}) scores in %")
        if got.multimodal:
            print(f"visual input: {got.answer['visual_input']}")
        if got.dropped_types:
            dropped = ", ".join(sorted(got.dropped_types))
            print(f"not scored: {dropped} (dropped from the gold and from the predictions)")
        print(got.report.table(ordered=True))
    return 0


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``OLD=NEW`` items of a repeatable flag as a mapping."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{flag} expects OLD=NEW (NEW = O drops the type), got {item!r}")
        out[key] = value
    return out


def cmd_data_check(args: argparse.Namespace) -> int:
    import json

    from hamner.data.corpus import PRESETS, check_corpus, corpus_spec

    preset = args.path in PRESETS and not Path(args.path).exists()
    files = {"train": args.train, "dev": args.dev, "test": args.test}
    spec = corpus_spec(
        args.path if preset else None, None if preset or args.path is None else args.path, files, root=args.data_root,
        format=args.format, tag_scheme=args.tag_scheme, labels=args.labels.split(",") if args.labels else None,
        type_map=_pairs(args.type_map, "--type-map"), images=args.images, captions=args.captions,
    )  # fmt: skip
    report = check_corpus(spec)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 1 if report.problems.errors else 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from hamner.inference.onnx import export

    out = export(args.model, args.out, int8=args.int8)
    meta = json.loads((out / "onnx_export.json").read_text())
    print(
        json.dumps(
            {"out": str(out), "precision": meta["precision"], "inputs": meta["inputs"], "outputs": meta["outputs"]}
        )
    )
    return 0


def _refuse_output_that_is_input(input_name: str, output: str) -> None:
    """Stop before anything is opened for writing when the output is the input file itself (by device
    and inode: a symlink or a hard link to it included), or the file standard input reads: opening it
    for writing would empty the input (and standard output appending to it, ``>> FILE``, would read
    its own output without end)."""

    def stat_of(name: str, stream: Any) -> os.stat_result | None:
        try:
            return os.stat(name) if name != "-" else os.fstat(stream.fileno())
        except (OSError, AttributeError, ValueError):  # no such file (yet), or a stream without a file
            return None

    out, src = stat_of(output, sys.stdout), stat_of(input_name, sys.stdin)
    if out is None or src is None or not stat.S_ISREG(out.st_mode) or (src.st_dev, src.st_ino) != (out.st_dev, out.st_ino):
        return
    what = "standard input's file" if input_name == "-" else f"the input file {input_name}"
    target = "standard output" if output == "-" else f"-o {output}"
    raise ConfigError(f"{target} is {what} (the same file on disk): writing it would destroy the input; choose another output file")


def cmd_tag(args: argparse.Namespace) -> int:
    import io
    import json

    from hamner.inference.stream import ByteProgress, InputReader, StreamOptions, TagStream, binary_stdout, resume_point
    from hamner.inference.tagger import Tagger

    if args.text is not None:
        if args.input != "-":
            raise ConfigError("give either --text or an input file, not both")
        if args.resume:
            raise ConfigError("--resume continues an output file made from an input file, not --text")
        line = json.dumps(
            {"id": 1, "text": args.text, "image": args.image, "caption": args.caption}, ensure_ascii=False
        )
        # through the reader like a file's line: the same checks; surrogates cannot come from argv
        source: Any = io.BytesIO(line.encode("utf-8", errors="surrogateescape") + b"\n")
        name, fmt, folder = "--text", "jsonl", None
    elif args.image or args.caption:
        raise ConfigError("--image and --caption go with --text; in an input file use JSONL fields image and caption")
    else:
        name = "<stdin>" if args.input == "-" else args.input
        fmt = args.format
        folder = None if args.input == "-" else Path(args.input).resolve().parent
        source = None
        _refuse_output_that_is_input(args.input, args.output)
    skip, last = 0, None
    if args.resume:
        if args.output == "-" or args.pretty:
            raise ConfigError("--resume needs a JSONL output file (-o FILE), not standard output or --pretty")
        if Path(args.output).exists():
            skip, last = resume_point(Path(args.output))
            log.info("--resume: %s already answers %d input lines; continuing after them", args.output, skip)
    from hamner.vision import set_threads

    set_threads(args.threads)
    tagger = Tagger.from_pretrained(
        args.model, device=args.device, batch_size=args.batch_size, on_bad_image=args.on_bad_image, long_posts=args.long_posts,
        precision=args.precision, image_workers=args.image_workers, threads=args.threads,
        max_words=args.max_words, max_image_pixels=args.max_image_pixels,
    )
    options = StreamOptions(
        chunk_size=args.chunk_size, on_bad_line=args.on_bad_line, offsets=args.offsets, tokens=args.tokens,
        pretty=_pretty if args.pretty else None,
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        if source is None:
            source = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        reader = InputReader(
            source, name, fmt, folder, on_bad_text=args.on_bad_text, max_line_bytes=args.max_line_bytes, skip_lines=skip,
            blank_jsonl="post",
        )  # fmt: skip
        if args.output == "-":
            sink = binary_stdout()
        else:
            sink = stack.enter_context(open(args.output, "ab" if args.resume else "wb"))
        size = os.fstat(source.fileno()).st_size if name not in ("<stdin>", "--text") else None
        bar = stack.enter_context(
            ByteProgress(size, disable=args.no_progress or size is None or args.output == "-" and args.pretty)
        )
        stream = TagStream(tagger, reader, sink, options)
        counts = stream.counts
        where = "standard output" if args.output == "-" else args.output
        try:
            stream.run(bar, resume=(args.output, skip, last) if skip else None)
        except (HamnerError, KeyboardInterrupt) as exc:
            # exactly what is on disk: every line before the one that stopped the run
            n, first, final = counts["lines"], skip + 1, counts["last_line"]
            answering = f", answering lines {first}-{final} of {name}" if n > 1 else f", answering line {final} of {name}" if n else ""
            fix = "fix the line and " if isinstance(exc, HamnerError) else ""
            log.error(
                "stopped: %d output line%s written to %s this run%s%s", n, "s" if n != 1 else "", where, answering,
                f"; {fix}rerun with --resume to continue after them" if n and args.output != "-" and not args.pretty else "",
            )  # fmt: skip
            raise
    log.info(
        "%d output lines written to %s: %d posts tagged, %d error records%s%s%s%s", counts["lines"], where, counts["posts"], counts["errors"],
        f", {counts['blank']} blank JSONL lines answered as empty posts" if counts["blank"] else "",
        f", {counts['images_skipped']} images skipped (--on-bad-image skip)" if counts["images_skipped"] else "",
        f", {counts['windowed']} long posts read in windows" if counts["windowed"] else "",
        f", {counts['truncated']} truncated" if counts["truncated"] else "",
    )  # fmt: skip
    return 0


def cmd_bulk(args: argparse.Namespace) -> int:
    try:
        from hamner.bulk.job import BulkOptions, run_bulk
    except ImportError as exc:
        raise ConfigError(f"hamner bulk needs the 'bulk' extra (pip install -e '.[bulk]'): {exc}") from exc

    options = BulkOptions(
        model=args.model, inputs=args.input, output=args.output, output_format=args.output_format,
        images_root=args.images_root, on_bad_image=args.on_bad_image, on_bad_text=args.on_bad_text,
        max_line_bytes=args.max_line_bytes, overwrite=args.overwrite, address=args.address, num_cpus=args.num_cpus,
        num_gpus=args.num_gpus, object_store_mb=args.object_store_mb, part_rows=args.part_rows,
        rows_per_shard=args.rows_per_shard, commit_seconds=args.commit_seconds, tag_batch=args.tag_batch, model_batch=args.batch_size,
        image_batch=args.image_batch, tag_actors=args.tag_actors, image_actors=args.image_actors,
        cpus_per_tag_actor=args.cpus_per_tag_actor, cpus_per_image_actor=args.cpus_per_image_actor,
        gpus_per_tag_actor=args.gpus_per_tag_actor, io_tasks=args.io_tasks, device=args.device, precision=args.precision,
        max_attempts=args.max_attempts, progress=not args.no_progress,
    )  # fmt: skip
    s = run_bulk(options)
    errors = ", ".join(f"{k} {v}" for k, v in s["errors"].items())
    speed = f", {s['rows_per_s']} rows/s" if s["rows_per_s"] else ""
    print(
        f"hamner bulk: {s['rows']:,} rows from {s['inputs']} file(s) ({s['rows_this_run']:,} this run, {s['seconds']} s{speed})"
    )
    print(f"  entities: {s['entities']:,}")
    print(f"  rows with an error: {s['error_rows']:,}" + (f" ({errors})" if errors else ""))
    print(f"  output: {s['output']} ({args.output_format} shards, _manifest.json)")
    return 0


def _pretty(post_id: Any, data: dict[str, Any]) -> str:
    """One post for people: its entities, then what a HamLearning model saw of the image."""
    lines = [f"post {post_id}: {data['text']}"]
    ents = data["entities"]
    lines += [f"  {e['type']:<5} {e['text']!r} [{e['start']}:{e['end']}]" for e in ents] or ["  (no entities)"]
    if "relevance" in data:
        r = data["relevance"]
        lines.append(f"  relevance r = {r:.3f}" if r is not None else "  relevance r = none (no visual input)")
        if data.get("level_weights"):
            lines.append("  level weights: " + ", ".join(f"{k} {v:.3f}" for k, v in data["level_weights"].items()))
        visual = data.get("visual") or {}
        if visual:
            lines.append(f"  image: {visual['status']}")
            objs = visual.get("objects", [])
            lines += [f"  object {o['label']} {o['score']:.2f} box {o['box']}" for o in objs] or ["  objects: none"]
            words = visual.get("image_words", {}).get("words", [])
            if words:
                lines.append("  image words: " + " ".join(words))
    return "\n".join(lines) + "\n"


def cmd_preprocess(args: argparse.Namespace) -> int:
    import time

    from hamner.data.conll import read_captions
    from hamner.hashing import file_sha256
    from hamner.vision import set_threads
    from hamner.vision.cache import dataset_entries, folder_entries, preprocess
    from hamner.vision.config import load_vision_config
    from hamner.vision.extractor import VisualExtractor

    overrides = list(args.set or [])
    if args.on_bad_image is not None:
        overrides.append(f"on_bad_image={args.on_bad_image}")
    # missing images are expected in a dataset folder: skip is this command's default, below the config
    cfg = load_vision_config(args.config, overrides, defaults={"on_bad_image": "skip"})
    set_threads(args.threads)
    captions = read_captions(args.captions) if args.captions else None
    ocr = read_captions(args.ocr) if args.ocr else None
    if args.corpus:
        return _preprocess_corpus(args, cfg, ocr)
    if args.format != "auto":
        raise ConfigError("--format is for --corpus")
    if not args.images:
        raise ConfigError("pass --images DIR (with --dataset, or alone for a folder), or --corpus PATH")
    inputs: dict[str, Any] = {
        "dataset": args.dataset,
        "images": str(Path(args.images).resolve()),
        "captions": {"path": str(Path(args.captions).resolve()), "sha256": file_sha256(Path(args.captions))}
        if args.captions
        else None,
        "ocr": {"path": str(Path(args.ocr).resolve()), "sha256": file_sha256(Path(args.ocr))} if args.ocr else None,
    }
    if args.dataset:
        entries, facts = dataset_entries(
            args.dataset, args.images, data_root=args.data_root, captions=captions, ocr=ocr
        )
    else:
        entries, facts = folder_entries(args.images, captions=captions, ocr=ocr), {}
    out = args.out or str(Path("features") / (args.dataset or Path(args.images).resolve().name))
    log.info("extracting %d entries into %s (%s, %s)", len(entries), out, cfg.backbone, cfg.detector)
    t0 = time.perf_counter()
    extractor = VisualExtractor(cfg)
    log.info("models loaded in %.1f s; fingerprint %s", time.perf_counter() - t0, extractor.fingerprint[:12])
    manifest = preprocess(
        entries,
        out,
        extractor,
        inputs=inputs,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        workers=args.workers,
        extra={"folder": facts, "command": args.command_line},
    )
    return _report_preprocess(out, manifest, cfg.on_bad_image)


def _preprocess_corpus(args: argparse.Namespace, cfg: Any, ocr: dict[str, str] | None) -> int:
    """``hamner preprocess --corpus PATH``: every post of every split keyed by its image's content
    and its caption (posts without image: their caption words; one entry per distinct image and caption)."""
    import time

    from hamner.data.corpus import corpus_spec
    from hamner.hashing import file_sha256
    from hamner.vision.cache import KEY_SCHEME_CONTENT, corpus_entries, preprocess
    from hamner.vision.extractor import VisualExtractor

    if args.dataset:
        raise ConfigError("--corpus and --dataset exclude each other (a preset's cache is keyed by IMGID: --dataset)")
    spec = corpus_spec(None, args.corpus, root=args.data_root, format=args.format, images=args.images, captions=args.captions)
    entries, facts = corpus_entries(spec, ocr)

    def described(path: Path | None) -> dict[str, str] | None:
        return None if path is None else {"path": str(path.resolve()), "sha256": file_sha256(path)}

    inputs: dict[str, Any] = {
        "corpus": {"name": spec.name, "path": str(Path(args.corpus).resolve()) if Path(args.corpus).exists() else args.corpus,
                   "files": {k: str(v.resolve()) for k, v in spec.files.items()}, "format": args.format},
        "images": str(spec.images.resolve()) if spec.images else None,
        "captions": described(spec.captions),
        "ocr": described(Path(args.ocr)) if args.ocr else None,
    }  # fmt: skip
    out = args.out or str(Path("features") / spec.name)
    log.info(
        "extracting %d entries (distinct images and captions of %d posts) into %s",
        len(entries), sum(facts["posts"].values()), out,
    )  # fmt: skip
    t0 = time.perf_counter()
    extractor = VisualExtractor(cfg)
    log.info("models loaded in %.1f s; fingerprint %s", time.perf_counter() - t0, extractor.fingerprint[:12])
    manifest = preprocess(
        entries, out, extractor, inputs=inputs, shard_size=args.shard_size, overwrite=args.overwrite,
        progress=not args.no_progress, workers=args.workers, extra={"corpus": facts, "command": args.command_line},
        key_scheme=KEY_SCHEME_CONTENT,
    )  # fmt: skip
    return _report_preprocess(out, manifest, cfg.on_bad_image)


def _report_preprocess(out: str, manifest: dict[str, Any], on_bad_image: str) -> int:
    import json

    counts = manifest["counts"]
    bad = {k: v for k, v in counts.items() if k not in ("entries", "images_found") and v}
    log.info(
        "%s: %d entries, %d images found%s; %.2f objects per image; %.1f s",
        out,
        counts["entries"],
        counts["images_found"],
        "".join(f", {v} {k}" for k, v in bad.items()),
        manifest["objects_per_image"]["mean"],
        manifest["time_s"],
    )
    if bad and on_bad_image == "skip":
        log.info(
            "posts without a usable image keep their caption/OCR words only (--on-bad-image skip); the manifest lists each one's status"
        )
    print(json.dumps({"out": out, "counts": counts, "fingerprint": manifest["fingerprint"]}))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from hamner.serve.app import create_app
        from hamner.serve.service import ServeConfig, TaggingService
    except ImportError as exc:
        raise ConfigError(f"hamner serve needs the 'serve' extra (pip install -e '.[serve]'): {exc}") from exc
    from hamner.vision import set_threads
    from hamner.vision.config import load_vision_config

    set_threads(args.threads)
    vision = load_vision_config(None, ["on_bad_image=error"])
    config = ServeConfig(
        max_text_chars=args.max_text_chars,
        max_image_bytes=args.max_image_mb * 1024 * 1024,
        max_image_pixels=args.max_image_pixels,
        max_image_decoded_mb=args.max_image_decoded_mb,
        max_decoding=args.max_decoding,
        max_decode_waiting=args.max_decode_waiting,
        max_words=args.max_words,
        batching=not args.no_batching,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        batch_wait_ms=args.batch_wait_ms,
        detect_objects=not args.no_objects,
        vision=vision,
    )
    service = TaggingService.from_pretrained(args.model, config, device=args.device, precision=args.precision)
    log.info("model %s loaded; serving on http://%s:%d", " + ".join(args.model), args.host, args.port)
    uvicorn.run(
        create_app(service), host=args.host, port=args.port, log_level="warning" if not args.verbose else "info"
    )
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from hamner.training.curves import plot_training_curves

    for run in args.runs:
        print(plot_training_curves(run))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from hamner.data.download import DEFAULT_BASE_URL, download_dataset

    dest = args.dest or os.environ.get("HAMNER_DATA_ROOT")
    if not dest:
        raise ConfigError("pass --dest DIR or set HAMNER_DATA_ROOT: where to write <dataset>/<file>")
    paths = download_dataset(args.dataset, dest, base_url=args.base_url or DEFAULT_BASE_URL, force=args.force)
    for p in paths:
        print(p)
    return 0


def cmd_labelstudio_predictions(args: argparse.Namespace) -> int:
    import json

    from hamner.data.labelstudio import predictions_for, read_jsonl

    tagged = read_jsonl(args.tagged)
    if args.posts:  # images and captions of the tagged posts, from the input hamner tag read
        inputs = {rec["line"]: rec for rec in read_jsonl(args.posts)}
        folder = Path(args.posts).parent
        for rec in tagged:
            post = inputs.get(rec["line"])
            if post is None or post.get("id", rec["line"]) != rec.get("id"):
                got = None if post is None else post.get("id", rec["line"])
                raise ConfigError(f"{args.tagged}:{rec['line']} answers post id {rec.get('id')!r}, but line {rec['line']} of {args.posts} has id {got!r}: not its input")
            for key in ("image", "caption"):
                if post.get(key) is not None:
                    rec[key] = post[key]
            if post.get("image") is not None and args.image_url_prefix == "" and not Path(post["image"]).is_absolute():
                rec["image"] = str(folder / post["image"])
    tasks = predictions_for(
        tagged, args.from_name, args.to_name, args.model_version,
        offsets=args.offsets, image_url_prefix=args.image_url_prefix, source=str(args.tagged),
    )  # fmt: skip
    text = json.dumps(tasks, ensure_ascii=False, indent=1)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        log.info("%d Label Studio tasks with predictions written to %s", len(tasks), args.output)
    return 0


def cmd_labelstudio_config(args: argparse.Namespace) -> int:
    from hamner.data.labelstudio import labeling_config

    print(labeling_config(args.types, from_name=args.from_name, to_name=args.to_name,
                          image_field="image" if args.image else None, caption_field="caption" if args.caption else None), end="")
    return 0


def _int_at_least(text: str, least: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0 meaning "no limit"; the message names the value)."""
    return _int_at_least(text, 0, "an integer >= 0")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names the value)."""
    return _int_at_least(text, 1, "a positive integer")


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="autocast precision of the forward pass (weights stay fp32); auto: bf16 on a GPU that has it, fp32 on a CPU",
    )


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train a tagger from a YAML config")
    p.add_argument("--config", required=True, help="configs/<name>.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.seed=2")
    p.add_argument("--data-root", help="folder with twitter2015/ and twitter2017/ (default: $HAMNER_DATA_ROOT)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished epoch")
    p.add_argument("--stop-after-epoch", type=int, metavar="N", help="stop after epoch N, resumable with --resume")
    p.set_defaults(func=cmd_train)


def _add_curves_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("curves", help="plot a run's per-epoch training loss and dev F1 (training_curves.png)")
    p.add_argument("runs", nargs="+", help="run directories holding metrics.jsonl (training writes the plot itself)")
    p.set_defaults(func=cmd_curves)


def _add_labelstudio_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("labelstudio", help="Label Studio round trip: predictions to import, a labelling config")
    ls_sub = p.add_subparsers(dest="labelstudio_command", required=True)
    d = ls_sub.add_parser("predictions", help="hamner tag output -> Label Studio import tasks with predictions (JSON)")
    d.add_argument("tagged", help="hamner tag output (JSONL)")
    d.add_argument("-o", "--output", default="-", help="tasks JSON to import (default: standard output)")
    d.add_argument("--posts", help="the JSONL input hamner tag read: its images and captions go into the tasks")
    d.add_argument("--offsets", choices=["codepoints", "utf16"], default="codepoints", help="the unit hamner tag wrote (its --offsets)")
    d.add_argument("--image-url-prefix", default="", help="put before each image path, e.g. /data/local-files/?d=photos/")
    d.add_argument("--from-name", default="label", help="the Labels control's name in the project's config")
    d.add_argument("--to-name", default="text", help="the Text object's name in the project's config")
    d.add_argument("--model-version", default="hamner", help="model_version of the predictions")
    d.set_defaults(func=cmd_labelstudio_predictions)
    d = ls_sub.add_parser("config", help="print a labelling config (XML) for a label set")
    d.add_argument("types", nargs="+", help="entity types, in the order the labels are shown")
    d.add_argument("--image", action="store_true", help="show the task's $image above the text")
    d.add_argument("--caption", action="store_true", help="show the task's $caption below the text")
    d.add_argument("--from-name", default="label")
    d.add_argument("--to-name", default="text")
    d.set_defaults(func=cmd_labelstudio_config)


def _add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint on a dataset split (per-type table)")
    p.add_argument(
        "--model", required=True, action="append",
        help="checkpoint directory (save_pretrained output, e.g. RUN/best); repeat it to score an ensemble",
    )  # fmt: skip
    p.add_argument("--split", default="test", choices=["train", "valid", "dev", "test"])
    p.add_argument(
        "--dataset",
        help="a preset (twitter2015, twitter2017) or a corpus folder (default: the one the model was trained on)",
    )
    p.add_argument(
        "--gold",
        metavar="FILE",
        help="score on this gold file instead (any corpus format: CoNLL, JSONL spans, Label Studio export)",
    )
    p.add_argument(
        "--format",
        choices=list(FORMAT_CHOICES),
        default="auto",
        help="the gold file's format (default: from its content)",
    )
    p.add_argument(
        "--type-map",
        action="append",
        metavar="OLD=NEW",
        help="rename a gold type (NEW = O drops it, from the gold and from the predictions: "
        "MISC=O scores a four-type model on a three-type corpus); default: the checkpoint's own map",
    )
    p.add_argument("--data-root", help="folder with twitter2015/ and twitter2017/ (default: $HAMNER_DATA_ROOT)")
    p.add_argument("--device", default="cpu")
    add_precision_option(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--features", help="a multimodal model's feature cache for the dataset ('hamner preprocess' output)")
    p.add_argument("--images", help="folder where a post's IMGID is looked up (as data.images in training)")
    p.add_argument("--captions", help="caption file '<IMGID>.jpg :<caption>' (as data.captions in training)")
    p.add_argument(
        "--text-path", action="store_true", help="score a multimodal model with no visual input (its text path)"
    )
    p.add_argument(
        "--predictions",
        metavar="FILE",
        help="also write every post's gold and predicted tags as JSONL (.gz: compressed)",
    )
    p.add_argument(
        "--mode",
        choices=["conlleval", "strict"],
        default="conlleval",
        help="conlleval (seqeval default) or strict IOB2",
    )
    p.set_defaults(func=cmd_evaluate)


def _add_export_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (run on ONNX Runtime by tag/evaluate/serve), optionally int8",
        description="Write an ONNX model of everything up to the emissions (dynamic batch and length axes), with the "
        "checkpoint's config, labels and tokenizer beside it; tag, evaluate and serve accept the directory.",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="checkpoint directory (save_pretrained output, e.g. RUN/best)")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights for the encoder's MatMuls (hamner.inference.onnx.INT8_TEXT_DEFAULT; HamLearning: INT8_DEFAULT)",
    )
    p.set_defaults(func=cmd_export)


def _add_tag_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tag", help="tag raw posts: one per line, or JSONL with text and optional image/caption")
    p.add_argument("--model", required=True, action="append", help="checkpoint directory; repeat it for an ensemble")
    p.add_argument("input", nargs="?", default="-", help="input file (default: standard input)")
    p.add_argument("-o", "--output", default="-", help="output JSONL file (default: standard output)")
    p.add_argument(
        "--format", choices=["auto", "text", "jsonl"], default="auto",
        help="auto: by extension (.jsonl/.ndjson/.json: JSONL, .txt: text), else by the first non-empty line; chosen once per file",
    )  # fmt: skip
    p.add_argument("--tokens", action="store_true", help="also write the words with offsets and their BIO tags")
    p.add_argument("--text", help="tag this one post instead of reading an input file")
    p.add_argument("--image", help="with --text: the post's image file (read by a HamLearning model)")
    p.add_argument("--caption", help="with --text: a caption of the image (image words for a HamLearning model)")
    p.add_argument("--pretty", action="store_true", help="human-readable output: entities, r, level weights, objects")
    p.add_argument(
        "--on-bad-image",
        choices=["error", "skip"],
        default="error",
        help="a missing/unreadable/huge image: a bad line (default; see --on-bad-line) or tag the post without it "
        "from its text and caption (logged with file, line and id)",
    )
    p.add_argument(
        "--on-bad-line", choices=["error", "skip"], default="error",
        help="a line that cannot be tagged (bad JSON or UTF-8, a wrong field, an unpaired surrogate, a tokenizer time-out, "
        "more words than --max-words, a bad image under --on-bad-image error): stop naming file, line and id after writing "
        "every line before it (default), or write an error record {id, line, error} for it (logged)",
    )  # fmt: skip
    p.add_argument(
        "--on-bad-text", choices=["error", "replace"], default="error",
        help="invalid UTF-8 or unpaired surrogates: a bad line (default), or replaced by U+FFFD (logged)",
    )  # fmt: skip
    p.add_argument(
        "--long-posts", choices=["window", "truncate"], default="window",
        help="a post longer than the encoder's input: read in overlapping windows (default), or cut there "
        "(the record's words_not_read counts the words tagged O unread)",
    )  # fmt: skip
    p.add_argument(
        "--offsets", choices=["codepoints", "utf16"], default="codepoints",
        help="unit of start/end: Unicode code points (Python string indices, default) or UTF-16 units (JavaScript)",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue an interrupted -o FILE after its last complete line")
    p.add_argument("--chunk-size", type=positive_int, default=256, help="posts read, tagged and written at a time")
    p.add_argument("--max-line-bytes", type=positive_int, default=1 << 20, help="a longer input line is a bad line")
    p.add_argument(
        "--max-words", type=non_negative_int, default=DEFAULT_MAX_WORDS,
        help=f"a post with more words is a bad line: a bound on one post's cost (default {DEFAULT_MAX_WORDS:,}, "
        "far above any real post; 0: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--max-image-pixels", type=positive_int,
        help="a HamLearning model: an image with more pixels (width x height, read from its header) is refused before "
        "decoding, a bad image (default: the checkpoint's vision setting, 89,478,485)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown for an input file, in bytes)")
    p.add_argument("--device", default="cpu")
    add_precision_option(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="encoder inputs (posts or windows of long posts) run at once")
    p.add_argument("--threads", type=positive_int, help="torch/OpenCV/ONNX Runtime threads (default: tagging uses one per CPU this process may use, one fewer per CPU that other processes keep busy)")
    p.add_argument(
        "--image-workers", type=positive_int, default=1,
        help="a HamLearning model: images read at once, each in its own thread (with --threads 1, one per core reads the most images/s)",
    )  # fmt: skip
    p.set_defaults(func=cmd_tag)


def _add_bulk_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bulk",
        help="tag JSONL/Parquet collections (with their images) on Ray Data, embedded here or on a cluster",
        description="Read -> image features (actor pool, HamLearning) -> tagging (actor pool) -> Parquet or JSONL shards. "
        "One output row per input row (bad ones with 'error'); rerun the same command to finish an interrupted job.",
    )
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--input", required=True, action="append", metavar="PATH_OR_GLOB",
                   help="JSONL (.jsonl/.ndjson/.json) or Parquet files: a file, a folder or a glob; repeatable")  # fmt: skip
    p.add_argument("--output", required=True, metavar="DIR", help="output folder: shards, _index/ and _manifest.json")
    p.add_argument(
        "--output-format", choices=["parquet", "jsonl"], default="parquet", help="shard format (default parquet)"
    )
    p.add_argument("--images-root", help="folder of relative image paths (default: each input file's folder)")
    p.add_argument(
        "--on-bad-image", choices=["error", "skip"], default="error",
        help="a missing/unreadable/truncated/too large image: the row gets the error and no entities (default), "
        "or also is tagged from its text and caption (skip)",
    )  # fmt: skip
    p.add_argument(
        "--on-bad-text",
        choices=["error", "replace"],
        default="error",
        help="invalid UTF-8 or unpaired surrogates: a bad row, or replaced by U+FFFD",
    )
    p.add_argument("--max-line-bytes", type=positive_int, default=1 << 20, help="a longer JSONL line is a bad row")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the output of another job (other model, inputs or options) in --output",
    )
    p.add_argument(
        "--address",
        help="join a running Ray cluster: 'auto' (from a machine of the cluster) or 'ray://HOST:10001'; default: embedded",
    )
    p.add_argument("--num-cpus", type=positive_int, help="embedded Ray: CPUs to use (default: all cores)")
    p.add_argument("--num-gpus", type=int, help="embedded Ray: GPUs to use (default: those detected)")
    p.add_argument("--object-store-mb", type=positive_int, help="embedded Ray: object store size (default: Ray's, 30%% of memory)")
    p.add_argument("--part-rows", type=positive_int, default=512, help="input rows per read task (a Parquet file is read by row group)")
    p.add_argument("--rows-per-shard", type=positive_int, default=10_000, help="most rows per output shard (the unit of restart)")
    p.add_argument(
        "--commit-seconds", type=float, default=60.0,
        help="longest wait between shard commits (the first comes after 2 s, then 4, 8, ... up to this)",
    )  # fmt: skip
    p.add_argument("--tag-batch", type=positive_int, default=256, help="rows per call of a tagging actor")
    p.add_argument("--batch-size", type=positive_int, default=32, help="posts per forward pass of the model")
    p.add_argument("--image-batch", type=positive_int, default=16, help="rows per call of an image actor")
    p.add_argument(
        "--tag-actors",
        type=positive_int,
        help="tagging actors (default: one per GPU, else one per CPU for text-only, per 16 CPUs for HamLearning)",
    )
    p.add_argument(
        "--image-actors",
        type=positive_int,
        help="image actors of a HamLearning model (default: one per CPU the tagging actors leave)",
    )
    p.add_argument(
        "--cpus-per-tag-actor",
        type=float,
        help="CPUs (and torch threads) of each tagging actor (default 1; 0 reserved for a HamLearning model on CPUs)",
    )
    p.add_argument("--cpus-per-image-actor", type=float, default=1.0, help="CPUs (and threads) of each image actor")
    p.add_argument(
        "--gpus-per-tag-actor",
        type=float,
        help="GPUs of each tagging actor (default: 1 when the cluster has GPUs, else 0)",
    )
    p.add_argument(
        "--io-tasks", type=positive_int, help="read and write tasks running at a time (default: CPUs/8, 1 to 8)"
    )
    p.add_argument("--device", help="the tagging actors' torch device (default: cuda when they have a GPU, else cpu)")
    add_precision_option(p)
    p.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        help="passes over the rows still missing after a failure Ray could not recover from",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (rows written)")
    p.set_defaults(func=cmd_bulk)


def _add_preprocess_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preprocess",
        help="extract every image of a dataset (or folder) once into a feature cache",
        description="Extract the global grid, objects, spatial geometry and semantic words of every image into a "
        "resumable, memory-mappable cache with a manifest. Rerun the same command to resume an interrupted run.",
    )
    p.add_argument(
        "--dataset", choices=["twitter2015", "twitter2017"], help="key the cache by this dataset's IMGIDs (all splits)"
    )
    p.add_argument(
        "--corpus", metavar="PATH",
        help="a corpus of your own (a folder with train/dev/test files, or one file; any format): every post's "
        "image ('image' relative to its file, or its IMGID in --images) and caption, keyed by their content",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=list(FORMAT_CHOICES), default="auto", help="with --corpus: its files' format (default: from the content)"
    )  # fmt: skip
    p.add_argument(
        "--images",
        help="image folder: <IMGID>.jpg files (the official archive's layout); with --corpus: where IMGIDs are looked up",
    )
    p.add_argument("--captions", help="caption file, lines '<IMGID>.jpg :<caption>' (e.g. blip2_captions.txt)")
    p.add_argument("--ocr", help="OCR text file, same format as --captions")
    p.add_argument("--data-root", help="folder with twitter2015/ and twitter2017/ (default: $HAMNER_DATA_ROOT)")
    p.add_argument("--out", help="cache directory (default: features/<dataset or folder name>)")
    p.add_argument(
        "--config", help="YAML with vision settings (a vision-only file or an experiment config's 'vision:' section)"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a vision setting, e.g. score_threshold=0.5"
    )
    p.add_argument(
        "--on-bad-image",
        choices=["skip", "error"],
        help="missing/unreadable/truncated/too large image: skip its visual part, logged and counted "
        "(the default, unless the config says otherwise), or stop",
    )
    p.add_argument("--shard-size", type=positive_int, default=256, help="images per shard (the unit of resumption)")
    p.add_argument("--threads", type=positive_int, help="torch/OpenCV threads (default: all cores)")
    p.add_argument(
        "--workers", type=positive_int, default=1,
        help="images extracted at once, each in its own thread (with --threads 1 and one worker per core: the most images/s)",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="delete a cache made with other settings or inputs and rebuild"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_preprocess)


def _add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="a web page and a JSON API (POST /v1/tag) over a checkpoint")
    p.add_argument("--model", required=True, action="append", help="checkpoint directory; repeat it for an ensemble")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    add_precision_option(p)
    p.add_argument("--threads", type=positive_int, help="torch/OpenCV/ONNX Runtime threads (default: tagging uses one per CPU this process may use, one fewer per CPU that other processes keep busy)")
    p.add_argument("--no-batching", action="store_true", help="tag each request on its own")
    p.add_argument("--max-batch", type=positive_int, default=16, help="most requests tagged together")
    p.add_argument("--max-queue", type=positive_int, default=256, help="waiting requests beyond this get 503")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="how long the first request waits for company (0: take what is queued)",
    )
    p.add_argument(
        "--no-objects",
        action="store_true",
        help="do not run the image models on attached pictures (a HamLearning model then tags with the caption alone)",
    )
    p.add_argument("--max-text-chars", type=positive_int, default=2000, help="longest accepted text (and caption)")
    p.add_argument("--max-image-mb", type=positive_int, default=10, help="largest accepted image file, in MiB")
    p.add_argument("--max-image-pixels", type=positive_int, default=40_000_000, help="largest accepted width x height (checked before decoding)")
    p.add_argument("--max-image-decoded-mb", type=positive_int, default=256, help="most memory one image may take to decode, in MiB (estimated from its header, checked before decoding)")
    p.add_argument("--max-decoding", type=positive_int, default=2, help="images decoded at once")
    p.add_argument("--max-decode-waiting", type=positive_int, default=16, help="uploads waiting for a decoding thread beyond this get 503 with Retry-After")
    p.add_argument("--max-words", type=positive_int, default=600, help="most words in one post (a post's cost grows with them)")
    p.set_defaults(func=cmd_serve)


def _add_data_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser("download", help="fetch the public text splits and captions, verified by SHA-256")
    d.add_argument("dataset", choices=["twitter2015", "twitter2017"])
    d.add_argument("--dest", help="data root to write into (default: $HAMNER_DATA_ROOT)")
    d.add_argument("--base-url", help="mirror of raw.githubusercontent.com (owner/repo/commit/path layout)")
    d.add_argument("--force", action="store_true", help="download again even if a verified copy is present")
    d.set_defaults(func=cmd_data_download)
    d = data_sub.add_parser(
        "check", help="read a corpus without training: posts, tokens, entities per type per split, images, every problem",
        description="Exit status 0: no error (warnings may be listed); 1: errors, each with file:line.",
    )  # fmt: skip
    d.add_argument(
        "path",
        nargs="?",
        help="a corpus folder (train/dev/test files), one file, or a preset name (twitter2015, twitter2017)",
    )
    d.add_argument("--train", help="the training file (replaces the folder's)")
    d.add_argument("--dev", help="the dev file")
    d.add_argument("--test", help="the test file")
    d.add_argument(
        "--format", choices=list(FORMAT_CHOICES), default="auto", help="file format (default: from the content)"
    )
    d.add_argument(
        "--tag-scheme", choices=["auto", "bio", "iob1", "bioes"], default="auto", help="tag scheme of column files"
    )
    d.add_argument("--labels", help="declared entity types, comma separated (fixes their order, refuses others)")
    d.add_argument(
        "--type-map", action="append", metavar="OLD=NEW", help="rename or merge a type (NEW = O drops it); repeatable"
    )
    d.add_argument("--images", help="folder where a post's IMGID is looked up (<IMGID>.jpg)")
    d.add_argument("--captions", help="caption file, lines '<IMGID>.jpg :<caption>'")
    d.add_argument("--data-root", help="the data root (for a preset or a relative path)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=cmd_data_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamner", description="Multimodal NER for tweets (HamLearning).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and the INFO and WARNING lines of other libraries (hidden without it)")
    parser.add_argument("--version", action="version", version=f"hamner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_curves_parser(sub)
    _add_labelstudio_parser(sub)
    _add_evaluate_parser(sub)
    _add_export_parser(sub)
    _add_tag_parser(sub)
    _add_bulk_parser(sub)
    _add_preprocess_parser(sub)
    _add_serve_parser(sub)
    _add_data_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "hamner " + shlex.join(sys.argv[1:] if argv is None else argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except (HamnerError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"hamner {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
