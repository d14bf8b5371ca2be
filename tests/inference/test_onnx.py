"""hamner export and the ONNX Runtime backend: the same emissions, tags, offsets, relevance and level
weights as the PyTorch model (tiny random models; text-only and HamLearning)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from conftest import TINY_WORDS, tiny_text_checkpoint  # noqa: E402
from hamner import Tagger  # noqa: E402
from hamner.cli import main  # noqa: E402
from hamner.errors import ConfigError  # noqa: E402
from hamner.inference.onnx import OnnxTagger, export, is_exported, load_model, viterbi  # noqa: E402
from hamner.models.crf import CRF  # noqa: E402
from hamner.models.tagger import TextTagger  # noqa: E402
from synthetic import TINY_POSTS, tiny_hamlearning_checkpoint  # noqa: E402

ATOL = 1e-4  # fp32 emissions: ONNX Runtime's fused kernels against PyTorch's
INT8_AGREEMENT = 0.8  # share of words whose int8 tag equals the fp32 tag, at least (random tiny models)


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [*TINY_WORDS, "Obama", "@nba", "#paris", "http://t.co/x", "!", "Zürich", "🙂"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(n)]


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("onnx-text")
    ckpt = tiny_text_checkpoint(base)
    return {"ckpt": ckpt, "fp32": export(ckpt, base / "fp32"), "int8": export(ckpt, base / "int8", int8=True)}


@pytest.fixture(scope="module")
def mm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    setup = tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("onnx-mm"))
    setup["fp32"] = export(setup["ckpt"], setup["base"] / "fp32")
    setup["int8"] = export(setup["ckpt"], setup["base"] / "int8", int8=True)
    return setup


def test_viterbi_equals_the_crf_decoder() -> None:
    torch.manual_seed(0)
    crf = CRF(5)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    emissions = torch.randn(7, 9, 5)
    lengths = torch.tensor([9, 1, 0, 4, 9, 2, 6])
    mask = torch.arange(9)[None] < lengths[:, None]
    c = crf.crf
    got = viterbi(
        emissions.numpy(), lengths.numpy(), c.start_transitions.detach().numpy(), c.end_transitions.detach().numpy(),
        c.transitions.detach().numpy(),
    )  # fmt: skip
    assert got == crf.decode(emissions, mask)
    assert got[2] == []


def test_an_exported_directory_describes_itself(text_models: dict[str, Path]) -> None:
    d = text_models["fp32"]
    assert is_exported(d) and not is_exported(text_models["ckpt"])
    for name in ("model.onnx", "onnx_export.json", "hamner_config.json", "tokenizer", "encoder"):
        assert (d / name).exists(), name
    meta = json.loads((d / "onnx_export.json").read_text())
    assert meta["precision"] == "fp32" and meta["outputs"] == ["emissions"]
    assert len(meta["crf"]["transitions"]) == 9
    assert json.loads((text_models["int8"] / "onnx_export.json").read_text())["int8_rule"]["per_channel"] is True


def test_text_only_fp32_emissions_and_tags_equal_pytorch(text_models: dict[str, Path]) -> None:
    texts = _texts(40)
    torch_tagger = Tagger.from_pretrained(text_models["ckpt"], batch_size=8)
    onnx_tagger = Tagger.from_pretrained(text_models["fp32"], batch_size=8)
    assert isinstance(onnx_tagger.model, OnnxTagger)
    want, got = torch_tagger.tag_many(texts), onnx_tagger.tag_many(texts)
    for w, g in zip(want, got, strict=True):
        assert w.emissions is not None and g.emissions is not None
        assert torch.allclose(w.emissions, g.emissions, atol=ATOL), (w.emissions - g.emissions).abs().max()
        assert g.tags == w.tags and g.to_dict(with_tokens=True) == w.to_dict(with_tokens=True)


def test_text_only_long_posts_are_windowed_and_truncated_alike(text_models: dict[str, Path]) -> None:
    long = " ".join(["new york city paris london"] * 30)  # far past the 62 sub-tokens of one input
    for mode in ("window", "truncate"):
        w = Tagger.from_pretrained(text_models["ckpt"], long_posts=mode).tag(long)
        g = Tagger.from_pretrained(text_models["fp32"], long_posts=mode).tag(long)
        assert g.tags == w.tags and g.windows == w.windows and g.words_past_limit == w.words_past_limit
        assert w.windows > 1 if mode == "window" else w.words_past_limit > 0


def test_text_only_int8_tags_agree_with_fp32_on_most_words(text_models: dict[str, Path]) -> None:
    texts = _texts(60, seed=1)
    fp32 = Tagger.from_pretrained(text_models["fp32"]).tag_many(texts)
    int8 = Tagger.from_pretrained(text_models["int8"]).tag_many(texts)
    pairs = [(a, b) for x, y in zip(fp32, int8, strict=True) for a, b in zip(x.tags, y.tags, strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= INT8_AGREEMENT


def test_hamlearning_fp32_matches_pytorch_with_pixels_caption_only_and_no_image(mm: dict[str, Any]) -> None:
    texts = [" ".join(w for w, _ in rows) for _, rows, _ in TINY_POSTS] + ["obama in paris", "the nba game in london"]
    images = [mm["image"], None, None, mm["image"]]
    captions = [TINY_POSTS[0][2], None, "a red square", None]  # pixels+caption, nothing, caption only, pixels only
    want = Tagger.from_pretrained(mm["ckpt"]).tag_many(texts, images, captions)
    got = Tagger.from_pretrained(mm["fp32"]).tag_many(texts, images, captions)
    for w, g in zip(want, got, strict=True):
        assert w.emissions is not None and g.emissions is not None
        assert torch.allclose(w.emissions, g.emissions, atol=ATOL)
        assert g.tags == w.tags
        assert w.relevance is not None and g.relevance is not None and abs(w.relevance - g.relevance) < 1e-5
        assert w.level_weights is not None and g.level_weights is not None
        assert g.level_weights.keys() == w.level_weights.keys()
        assert all(abs(w.level_weights[k] - g.level_weights[k]) < 1e-5 for k in w.level_weights)
        assert json.dumps(g.to_dict()) and g.to_dict()["entities"] == w.to_dict()["entities"]
    assert got[1].relevance == 0.0  # neither image nor caption: the text path


@pytest.mark.parametrize("which", [[0], [1], [0, 1]])
def test_hamlearning_fp32_batches_with_and_without_visual_levels(mm: dict[str, Any], which: list[int]) -> None:
    """A batch where no post has an image (the PyTorch model then has no visual level at all) and
    mixed batches: the graph's empty levels must give the same numbers."""
    from hamner.data.conll import read_conll

    posts = read_conll(mm["data_root"] / "twitter2017" / "test.txt")
    chosen = [posts[i] for i in which]
    visuals = [mm["store"][p.imgid] for p in chosen]
    want = TextTagger.from_pretrained(mm["ckpt"]).run([p.words for p in chosen], visuals)
    got = OnnxTagger(mm["fp32"]).run([p.words for p in chosen], visuals)
    for w, g in zip(want, got, strict=True):
        assert torch.allclose(w.emissions, g.emissions, atol=ATOL) and w.tags == g.tags
        assert w.relevance == pytest.approx(g.relevance, abs=1e-5)


def test_hamlearning_int8_tags_agree_with_fp32_on_most_words(mm: dict[str, Any]) -> None:
    texts = _texts(30, seed=2)
    images = [mm["image"] if i % 2 else None for i in range(30)]
    fp32 = Tagger.from_pretrained(mm["fp32"]).tag_many(texts, images)
    int8 = Tagger.from_pretrained(mm["int8"]).tag_many(texts, images)
    pairs = [(a, b) for x, y in zip(fp32, int8, strict=True) for a, b in zip(x.tags, y.tags, strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= INT8_AGREEMENT


def test_cli_export_then_tag_and_evaluate(text_models: dict[str, Path], tmp_path: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--model", str(text_models["ckpt"]), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"
    assert main(["tag", "--model", str(out), "--text", "obama in paris", "--tokens"]) == 0
    onnx_line = json.loads(capsys.readouterr().out)
    assert main(["tag", "--model", str(text_models["ckpt"]), "--text", "obama in paris", "--tokens"]) == 0
    assert json.loads(capsys.readouterr().out) == onnx_line
    scores = []
    for model in (out, text_models["ckpt"]):
        assert main(["evaluate", "--model", str(model), "--dataset", "twitter2017", "--data-root", str(tiny_data_root), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0].pop("precision") == "onnx-fp32" and scores[1].pop("precision") == "fp32"
    assert scores[0] == scores[1]
    assert main(["tag", "--model", str(out), "--text", "x", "--precision", "bf16"]) == 2
    assert "precision" in capsys.readouterr().err


def test_cli_export_int8_prints_only_hamners_own_lines_unless_verbose(text_models: dict[str, Path], tmp_path: Path) -> None:
    """ONNX Runtime's quantiser logs every MatMul it skips on the root logger and torch.onnx warns
    while tracing: none of it reaches the terminal by default; ``hamner -v`` shows it."""
    errs = {}
    for verbose in (False, True):
        cmd = [sys.executable, "-m", "hamner.cli", *(["-v"] if verbose else []), "export", "--int8",
               "--model", str(text_models["ckpt"]), "--out", str(tmp_path / f"int8-{verbose}")]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        assert json.loads(run.stdout)["precision"] == "int8"
        errs[verbose] = run.stderr
    quiet, verbose_err = errs[False], errs[True]
    assert "INFO hamner.inference.onnx: exported" in quiet  # hamner's own line
    for noise in ("Ignore MatMul due to non constant B", "TracerWarning"):
        assert noise not in quiet, quiet
        assert noise in verbose_err
    assert all(" hamner" in line for line in quiet.splitlines() if line.strip()), quiet


def test_export_refuses_an_exported_directory_and_load_model_picks_the_backend(text_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already an exported"):
        export(text_models["fp32"], tmp_path / "again")
    assert isinstance(load_model(text_models["fp32"]), OnnxTagger)
    assert isinstance(load_model(text_models["ckpt"]), TextTagger)
    with pytest.raises(ConfigError, match="CPU"):
        OnnxTagger(text_models["fp32"]).to("cuda")


def test_importing_the_backend_does_not_import_onnxruntime() -> None:
    code = "import sys, hamner.inference.onnx, hamner.inference.tagger, hamner.cli; print('onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]


def test_numpy_is_what_the_session_gets(text_models: dict[str, Path]) -> None:
    model = OnnxTagger(text_models["fp32"])
    batch = model.collate([model.encode_post(["obama", "in", "paris"])])
    feeds = model.feeds(batch)
    assert all(isinstance(v, np.ndarray) for v in feeds.values()) and set(feeds) == set(model.input_names)


def test_hamlearning_export_carries_the_backbone_and_the_tagger_reads_images_with_it(mm: dict[str, Any]) -> None:
    from hamner.vision.onnx_backbone import OnnxBackbone

    meta = json.loads((mm["fp32"] / "onnx_export.json").read_text())
    assert meta["backbone"]["file"] == "backbone.onnx" and (mm["fp32"] / "backbone.onnx").is_file()
    onnx_tagger, torch_tagger = Tagger.from_pretrained(mm["fp32"]), Tagger.from_pretrained(mm["ckpt"])
    assert isinstance(onnx_tagger.extractor.backbone, OnnxBackbone)
    a, b = onnx_tagger.features(mm["image"], "a caption"), torch_tagger.features(mm["image"], "a caption")
    assert a.grid is not None and b.grid is not None and torch.allclose(a.grid.float(), b.grid.float(), atol=1e-4)
    assert a.object_labels == b.object_labels and a.semantic.words == b.semantic.words


def test_serve_answers_from_an_exported_model_like_from_the_checkpoint(trained_tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conftest import KNOWN_ENTITIES, KNOWN_POST
    from hamner.serve.app import create_app
    from hamner.serve.service import ServeConfig, TaggingService

    exported = export(trained_tiny_model, tmp_path / "int8", int8=True)
    service = TaggingService.from_pretrained(exported, ServeConfig(detect_objects=False))
    with TestClient(create_app(service)) as client:
        info = client.get("/v1/model").json()
        assert info["kind"] == "text-only" and info["max_subtokens"] == 64
        answer = client.post("/v1/tag", json={"text": KNOWN_POST}).json()
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in answer["entities"]] == KNOWN_ENTITIES


def test_int8_rules_text_only_per_token_outputs_hamlearning_fp32_outputs(text_models: dict[str, Path], mm: dict[str, Any]) -> None:
    """A text-only model gets INT8_TEXT_DEFAULT (the encoder's output projections per-token int8),
    HamLearning INT8_DEFAULT (those kept in fp32); everything after the encoder stays fp32."""
    import onnx

    from hamner.inference.onnx import INT8_DEFAULT, INT8_TEXT_DEFAULT

    for exported, want in ((text_models["int8"], INT8_TEXT_DEFAULT), (mm["int8"], INT8_DEFAULT)):
        rule = json.loads((exported / "onnx_export.json").read_text())["int8_rule"]
        assert {k: rule[k] for k in want} == want
        assert rule["kept_fp32"] and all("/encoder/" not in n or ("/output/dense/" in n and want is INT8_DEFAULT) for n in rule["kept_fp32"])
        nodes = onnx.load(str(exported / "model.onnx")).graph.node
        per_token = [n.name for n in nodes if n.op_type == "MatMulInteger" and "_per_token/" in n.name]
        assert all("/output/dense/" in n for n in per_token) and bool(per_token) == (want is INT8_TEXT_DEFAULT)
        assert not [n for n in nodes if n.op_type == "MatMulNBits"]


def test_blockwise_int8_takes_exactly_the_matmuls_its_rule_names(text_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 rule's ``blockwise`` MatMuls (those it keeps out of dynamic int8) become 8-bit
    MatMulNBits nodes, and only they (onnxruntime's quantizer would take every constant-weight
    MatMul); the tags agree with fp32; an onnxruntime too old for the kernel is named on load."""
    import onnx

    out = export(text_models["ckpt"], tmp_path / "bw", int8=True, int8_rule={"blockwise": [r"/encoder/.*/output/dense/"], "per_token": []})
    nodes = onnx.load(str(out / "model.onnx")).graph.node
    blockwise = sorted(n.name for n in nodes if n.op_type == "MatMulNBits")
    assert blockwise and all(re.search(r"^/encoder/.*/output/dense/MatMul", n) for n in blockwise)
    assert "/emission/MatMul" in {n.name for n in nodes if n.op_type == "MatMul"}  # kept in fp32
    rule = json.loads((out / "onnx_export.json").read_text())["int8_rule"]
    assert rule["block_size"] == 256 and rule["kept_fp32"] == ["/emission/MatMul"]
    texts = _texts(60, seed=1)
    fp32 = Tagger.from_pretrained(text_models["fp32"]).tag_many(texts)
    got = Tagger.from_pretrained(out).tag_many(texts)
    pairs = [(a, b) for x, y in zip(fp32, got, strict=True) for a, b in zip(x.tags, y.tags, strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) >= INT8_AGREEMENT
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.21.1")
    with pytest.raises(ConfigError, match=r"blockwise MatMuls .* need onnxruntime >= 1.22; this is 1.21.1"):
        OnnxTagger(out)
    OnnxTagger(text_models["fp32"])  # an export without blockwise MatMuls loads on any onnxruntime


def test_the_entity_type_channel_is_a_graph_input_and_matches_pytorch(tmp_path: Path, fake_spacy: Any) -> None:
    """The words' spaCy classes are fed to the graph like the shape ids; exporting needs no spaCy."""
    from conftest import make_tiny_encoder
    from hamner.models.config import TaggerConfig

    torch.manual_seed(0)
    config = TaggerConfig(encoder=str(make_tiny_encoder(tmp_path / "encoder")), max_length=64, use_entity_types=True, entity_type_dim=8)
    ckpt = TextTagger.from_config(config).save_pretrained(tmp_path / "ckpt")
    calls = len(fake_spacy.calls)
    out = export(ckpt, tmp_path / "fp32")
    assert len(fake_spacy.calls) == calls
    assert "entity_ids" in json.loads((out / "onnx_export.json").read_text())["inputs"]
    texts = [*_texts(20, seed=2), "Barack Obama visited Microsoft in Seattle", "rt apple and google", "RT Apple and Google"]
    want = Tagger.from_pretrained(ckpt, batch_size=8).tag_many(texts)
    got = Tagger.from_pretrained(out, batch_size=8).tag_many(texts)
    for w, g in zip(want, got, strict=True):
        assert w.emissions is not None and g.emissions is not None
        assert torch.allclose(w.emissions, g.emissions, atol=ATOL) and g.tags == w.tags
    assert not torch.allclose(got[-1].emissions, got[-2].emissions, atol=1e-3)  # spaCy's ORG reached the graph


def test_a_marked_model_exports_with_its_marker_and_matches_pytorch(tmp_path: Path) -> None:
    """The dataset marker is text before the words: the exported graph needs no new input, and the
    ONNX backend's word encoder puts the checkpoint's marker first, as PyTorch does."""
    from conftest import make_tiny_encoder
    from hamner.models.config import TaggerConfig

    torch.manual_seed(0)
    config = TaggerConfig(encoder=str(make_tiny_encoder(tmp_path / "encoder")), max_length=32, marker="twitter2015")
    ckpt = TextTagger.from_config(config).save_pretrained(tmp_path / "ckpt")
    out = export(ckpt, tmp_path / "fp32")
    texts = [*_texts(20, seed=3), " ".join(["new york city paris london"] * 8)]  # the last one is windowed
    want = Tagger.from_pretrained(ckpt, batch_size=8).tag_many(texts)
    got = Tagger.from_pretrained(out, batch_size=8).tag_many(texts)
    assert isinstance(Tagger.from_pretrained(out).model, OnnxTagger)
    assert Tagger.from_pretrained(out).model.word_encoder.marker == "twitter2015"
    for w, g in zip(want, got, strict=True):
        assert w.emissions is not None and g.emissions is not None
        assert torch.allclose(w.emissions, g.emissions, atol=ATOL) and g.tags == w.tags and g.windows == w.windows
    assert want[-1].windows > 1


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_batches_run_side_by_side_with_the_same_answers_as_one_at_a_time(text_models: dict[str, Path], kind: str) -> None:
    """With two threads and several batches, run() tags two batches at once on a shared one-thread
    session, its workers encoding the posts; the predictions equal those of one batch at a time,
    which encodes every post first (same batches, so int8's per-batch activation scales are the
    same too), in the posts' order, long posts' windows and truncation included."""
    words = [t.split() for t in _texts(70, seed=3)]
    for at in (5, 40):  # windows
        words.insert(at, ("new york city paris london " * (20 + at)).split())
    side = OnnxTagger(text_models[kind], threads=2)
    alone = OnnxTagger(text_models[kind], threads=2)
    alone.batch_parallel = False
    for mode in ("truncate", "window"):
        got, want = side.run(words, batch_size=8, long_posts=mode), alone.run(words, batch_size=8, long_posts=mode)
        assert [(p.tags, p.windows, p.words_not_read) for p in got] == [(p.tags, p.windows, p.words_not_read) for p in want]
    assert want[5].windows > 1 and want[40].windows > 1
    assert 1 in side._sessions and 1 not in alone._sessions  # the side-by-side path ran
    assert [p.tags for p in got] == [p.tags for p in want]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.emissions, b.emissions, atol=ATOL, rtol=0)
    one = OnnxTagger(text_models[kind], threads=2)
    assert one.run(words[:5], batch_size=8)[0].tags == want[0].tags and 1 not in one._sessions  # one batch: 2 threads


def test_visual_inputs_must_match_the_posts_on_every_path(text_models: dict[str, Path]) -> None:
    for parallel in (True, False):
        model = OnnxTagger(text_models["fp32"], threads=2)
        model.batch_parallel = parallel
        with pytest.raises(ValueError, match="3 posts but 1 visual inputs"):
            model.run([["obama"]] * 3, visuals=[None])


def test_an_error_in_a_side_by_side_batch_reaches_the_caller(text_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model = OnnxTagger(text_models["fp32"], threads=2)
    calls = []

    def broken_viterbi(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("batch 3 broke")
        return viterbi(*args)

    monkeypatch.setattr("hamner.inference.onnx.viterbi", broken_viterbi)
    with pytest.raises(RuntimeError, match="batch 3 broke"):
        model.run([t.split() for t in _texts(40, seed=4)], batch_size=8)


def test_side_by_side_batches_follow_the_usable_cpus_not_the_load(text_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's threads drop while other processes keep CPUs busy; the side-by-side batches
    do not (one-thread runs do not wait on each other). A pinned count (set_threads,
    OMP_NUM_THREADS) or a model's own fixed count is kept; batch_parallel=False runs one at a time."""
    from hamner.threads import ThreadGovernor

    g = ThreadGovernor(cpus=4)
    monkeypatch.setattr("hamner.threads._GOVERNOR", g)
    monkeypatch.setattr(g, "threads", lambda: 1)  # the machine is busy
    model = OnnxTagger(text_models["fp32"])
    assert model.threads == 1 and model.batch_workers() == 4
    g.pin(3)
    assert model.batch_workers() == 3
    assert OnnxTagger(text_models["fp32"], threads=2).batch_workers() == 2
    model.batch_parallel = False
    assert model.batch_workers() == 1


@pytest.mark.parametrize("kind", ["ckpt", "fp32"])
def test_one_long_tag_many_call_rereads_the_thread_count_between_batches(text_models: dict[str, Path], kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single call with many posts follows the machine's load batch by batch (it used to keep the
    count it started with: beside a busy process PyTorch kept 0.34 of its idle speed); the answers
    do not change."""
    texts = _texts(40, seed=5)
    want = [p.tags for p in Tagger.from_pretrained(text_models[kind], batch_size=8).tag_many(texts)]
    tagger = Tagger.from_pretrained(text_models[kind], batch_size=8)
    if kind == "fp32":
        tagger.model.batch_parallel = False  # the serial path, whose session follows the count
    counts = iter([2, 1, 1, 2, 1, 1, 1, 1])
    seen = []

    def next_count() -> int:
        n = next(counts)
        seen.append(n)
        return n

    monkeypatch.setattr(tagger, "_thread_count", next_count)
    got = [p.tags for p in tagger.tag_many(texts)]
    assert got == want
    assert len(seen) == 5  # 40 posts in batches of 8: once before the call, then before batches 2-5
    if kind == "fp32":
        assert tagger.model.threads == 1 and {1, 2} <= set(tagger.model._sessions)


def test_sessions_leave_out_the_fusions_measured_to_slow_them(text_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """OnnxTagger's sessions, for every thread count, are made without DISABLED_OPTIMIZERS
    (results/onnx_fusions.csv) and tag."""
    import onnxruntime

    from hamner.inference.onnx import DISABLED_OPTIMIZERS

    made: list[list[str]] = []
    real = onnxruntime.InferenceSession

    def recording(*args: Any, **kwargs: Any) -> Any:
        made.append(list(kwargs.get("disabled_optimizers", [])))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    model = OnnxTagger(text_models["int8"], threads=2)
    model._session(1)
    assert made == [list(DISABLED_OPTIMIZERS)] * 2 and "SkipLayerNormFusion" in DISABLED_OPTIMIZERS
    preds = Tagger(model).tag_many(_texts(10, seed=5))
    assert len(preds) == 10 and all(len(p.tags) == len(p.tokens) for p in preds)
