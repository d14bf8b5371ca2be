"""The Tagger on real input (issue 18): shared between threads, generators, long posts, broken text.

The thread tests compare 8 threads with the sequential answers; the one with the packaged image
models is marked ``weights`` (the OpenCV detector raced there), the others use the fake extractor
(tests/fakes.py) and drawn images.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_text_checkpoint
from hamner import Tagger
from hamner.data import tokenize as tokenize_module
from hamner.data.tokenize import tokenize
from hamner.errors import ConfigError, ImageError, TextError
from hamner.inference.tagger import TaggedPost, utf16_offsets
from hamner.models.config import TaggerConfig
from hamner.models.tagger import TextTagger
from synthetic import COLOURS, draw, tiny_hamlearning_checkpoint

REPO = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = sorted((REPO.parent / "shared" / "data" / "twitter2017" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_text_checkpoint(tmp_path_factory.mktemp("text-ckpt"))


@pytest.fixture(scope="module")
def mm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("mm-real-input"))


@pytest.fixture(scope="module")
def drawn_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("drawn")
    rng = random.Random(3)
    out = []
    for i in range(6):
        path = base / f"img{i}.png"
        draw(rng.choice(list(COLOURS)), rng.random() < 0.5, rng).save(path)
        out.append(path)
    return out


def same_posts(a: list[TaggedPost], b: list[TaggedPost]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.entities == y.entities and x.tags == y.tags
        assert x.relevance == y.relevance and x.level_weights == y.level_weights
        if x.emissions is not None or y.emissions is not None:
            assert x.emissions is not None and y.emissions is not None and torch.allclose(x.emissions, y.emissions, atol=1e-5)
        if x.features is not None:
            assert x.features.same_as(y.features)


def close_posts(a: list[TaggedPost], b: list[TaggedPost]) -> None:
    """:func:`same_posts` up to float rounding: for answers computed with other thread counts (image
    workers share the tagger's threads, and a sum split over other threads rounds differently)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.entities == y.entities and x.tags == y.tags
        assert x.relevance == pytest.approx(y.relevance, abs=1e-5)
        assert (x.level_weights is None) == (y.level_weights is None)
        if x.level_weights is not None and y.level_weights is not None:
            assert x.level_weights.keys() == y.level_weights.keys()
            assert all(x.level_weights[k] == pytest.approx(y.level_weights[k], abs=1e-5) for k in x.level_weights)
        if x.emissions is not None or y.emissions is not None:
            assert x.emissions is not None and y.emissions is not None and torch.allclose(x.emissions, y.emissions, atol=1e-4)
        if x.features is not None:
            assert y.features is not None
            rx, ry = x.features.record(), y.features.record()
            # ImageNet scores (rounded to 6 places in the record) may differ in their last place
            sx, sy = rx.pop("imagenet", None) or [], ry.pop("imagenet", None) or []
            assert rx == ry and [n for n, _ in sx] == [n for n, _ in sy]
            assert [v for _, v in sx] == pytest.approx([v for _, v in sy], abs=1e-5)
            ta, tb = x.features.tensors(), y.features.tensors()
            assert ta.keys() == tb.keys()
            for k in ta:
                # fp16 grids and regions: one unit in their last place (0.004 at 8) is a rounding difference
                assert torch.allclose(ta[k].float(), tb[k].float(), rtol=1e-3, atol=1e-2), (k, (ta[k].float() - tb[k].float()).abs().max())


def in_threads(fn: Callable[[int], TaggedPost], n: int, threads: int = 8) -> list[TaggedPost]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, range(n)))


# -- 1. threads -----------------------------------------------------------------------------------
def test_eight_threads_give_the_sequential_answers_with_images(mm: dict[str, Any], drawn_images: list[Path]) -> None:
    texts = [f"obama in paris {i}" for i in range(24)]
    images = [drawn_images[i % len(drawn_images)] if i % 4 else None for i in range(24)]
    captions = ["a red square" if i % 3 == 0 else None for i in range(24)]
    alone = Tagger.from_pretrained(mm["ckpt"])
    sequential = [alone.tag(t, im, c) for t, im, c in zip(texts, images, captions, strict=True)]
    shared = Tagger.from_pretrained(mm["ckpt"])  # its extractor is built by the threads themselves
    stdout = sys.stdout
    got = in_threads(lambda i: shared.tag(texts[i], images[i], captions[i]), len(texts))
    assert sys.stdout is stdout
    same_posts(got, sequential)


def test_image_workers_give_the_sequential_answers_and_errors(mm: dict[str, Any], drawn_images: list[Path], tmp_path: Path) -> None:
    texts = [f"obama in paris {i}" for i in range(24)]
    images = [drawn_images[i % len(drawn_images)] if i % 4 else None for i in range(24)]
    captions = ["a red square" if i % 3 == 0 else None for i in range(24)]
    sequential = Tagger.from_pretrained(mm["ckpt"]).tag_many(texts, images, captions)
    workers = Tagger.from_pretrained(mm["ckpt"], image_workers=3)
    same_posts(workers.tag_many(texts, images, captions), sequential)
    # a bad image: the same error as without workers (the first bad one in post order)
    (tmp_path / "bad1.jpg").write_bytes(b"not an image")
    (tmp_path / "bad2.jpg").write_bytes(b"not one either")
    bad = [*images[:5], tmp_path / "bad1.jpg", *images[6:10], tmp_path / "bad2.jpg", *images[11:]]
    with pytest.raises(ImageError, match="bad1.jpg"):
        workers.tag_many(texts, bad, captions)
    with pytest.raises(ConfigError, match="image_workers must be a positive integer"):
        Tagger.from_pretrained(mm["ckpt"], image_workers=0)


def test_the_extractor_is_built_once_whatever_the_number_of_threads(mm: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from hamner.vision import extractor as extractor_module

    built = []
    original = extractor_module.VisualExtractor.__init__

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(threading.get_ident())
        time.sleep(0.2)  # a real backbone takes seconds to load: every thread arrives before it is done
        original(self, *args, **kwargs)

    monkeypatch.setattr(extractor_module.VisualExtractor, "__init__", slow_init)
    tagger = Tagger.from_pretrained(mm["ckpt"])
    extractors = in_threads(lambda i: tagger.extractor, 8)  # type: ignore[arg-type, return-value]
    assert len(built) == 1 and all(e is extractors[0] for e in extractors)


def test_eight_threads_share_a_text_only_tagger(text_ckpt: Path) -> None:
    texts = [" ".join(random.Random(i).choice(["obama", "paris", "the", "nba", f"w{i}", "new", "york"]) for _ in range(12)) for i in range(40)]
    tagger = Tagger.from_pretrained(text_ckpt)
    tagger.model.word_encoder.CACHE_SIZE = 8  # type: ignore[misc]  # constant eviction: the cache swap races if unlocked
    alone = Tagger.from_pretrained(text_ckpt)
    sequential = [alone.tag(t) for t in texts]
    same_posts(in_threads(lambda i: tagger.tag(texts[i]), len(texts)), sequential)


@pytest.mark.weights
@pytest.mark.skipif(len(SAMPLE_IMAGES) < 4, reason="the sample images of ../shared/data are not here")
def test_eight_threads_with_the_packaged_image_models(mm: dict[str, Any], tmp_path: Path) -> None:
    """The packaged EfficientNet-Lite0 and OpenCV SSD: built once, stdout untouched, the detector's
    cv2.dnn net shared safely, every answer the sequential one."""
    from hamner.vision.config import VisionConfig

    model = TextTagger.from_pretrained(mm["ckpt"])
    cfg = TaggerConfig.from_dict({**model.config.to_dict(), "visual_channels": 1280})
    cfg.vision = VisionConfig().feature_settings()
    cfg.vision_fingerprint = None
    torch.manual_seed(0)
    real = TextTagger.class_for(cfg)(cfg, model.encoder, model.tokenizer).eval()
    ckpt = real.save_pretrained(tmp_path / "ckpt")
    posts = [(f"obama in paris {i}", SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)]) for i in range(16)]
    seq_tagger = Tagger.from_pretrained(ckpt)
    sequential = [seq_tagger.tag(t, im) for t, im in posts]
    shared = Tagger.from_pretrained(ckpt)
    stdout = sys.stdout
    got = in_threads(lambda i: shared.tag(*posts[i]), len(posts))
    assert sys.stdout is stdout
    same_posts(got, sequential)
    # two image workers (a detector net each) in one tag_many call: the answers of one worker, up to
    # rounding (the workers share the tagger's threads: one each here, against two in one worker)
    texts, images = [t for t, _ in posts], [im for _, im in posts]
    workers = Tagger.from_pretrained(ckpt, image_workers=2)
    close_posts(workers.tag_many(texts, images), seq_tagger.tag_many(texts, images))


@pytest.mark.weights
def test_building_the_packaged_backbone_does_not_touch_stdout() -> None:
    from hamner.vision.backbones import EfficientNetLite0

    stdout = sys.stdout
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: EfficientNetLite0(), range(4)))
        assert sys.stdout is captured
    assert sys.stdout is stdout and captured.getvalue() == ""


# -- 5. API traps ---------------------------------------------------------------------------------
def gen(items: list[Any]) -> Iterator[Any]:
    yield from items


def test_tag_many_reads_generators_like_lists(text_ckpt: Path, mm: dict[str, Any], drawn_images: list[Path]) -> None:
    texts = ["obama in paris", "", "the nba game"]
    text_only = Tagger.from_pretrained(text_ckpt)
    same_posts(text_only.tag_many(gen(texts)), text_only.tag_many(texts))
    assert len(text_only.tag_many(t for t in texts)) == 3
    multimodal = Tagger.from_pretrained(mm["ckpt"])
    images = [drawn_images[0], None, drawn_images[1]]
    captions = ["a red square", None, None]
    same_posts(multimodal.tag_many(gen(texts), gen(images), gen(captions)), multimodal.tag_many(texts, images, captions))


def test_utf16_offsets_count_astral_characters_twice(text_ckpt: Path) -> None:
    text = "😀 Obama 🇺🇸 in Paris"
    table = utf16_offsets(text)
    assert table is not None and table[0] == 0 and table[len(text)] == len(text.encode("utf-16-le")) // 2
    for i in range(len(text) + 1):
        assert table[i] == len(text[:i].encode("utf-16-le")) // 2
    assert utf16_offsets("Obama in Paris é") is None
    post = Tagger.from_pretrained(text_ckpt).tag(text)
    units = post.to_dict(with_tokens=True, offsets="utf16")["tokens"]
    points = post.to_dict(with_tokens=True)["tokens"]
    obama = next(i for i, t in enumerate(points) if t["text"] == "Obama")
    assert points[obama]["start"] == 2 and units[obama]["start"] == 3  # the emoji is two UTF-16 units


# -- 4. broken text -------------------------------------------------------------------------------
def test_an_unpaired_surrogate_is_a_text_error_naming_the_post(text_ckpt: Path) -> None:
    tagger = Tagger.from_pretrained(text_ckpt)
    with pytest.raises(TextError, match=r"post 1: the text holds an unpaired surrogate \(U\+D83D\) at character 6") as info:
        tagger.tag_many(["fine", "Obama \ud83d", "fine too"])
    assert info.value.index == 1
    with pytest.raises(TextError, match="caption holds an unpaired surrogate"):
        tagger.tag_many(["fine"], captions=["a \udc00 caption"])


def test_a_pathological_text_is_tokenized_in_pieces_not_timed_out() -> None:
    toks = tokenize("<-" * 30000)
    assert len(toks) == 30000 and toks[-1].start == 59998 and all(t.text == "<-" for t in toks)


@pytest.mark.parametrize("seed", range(30))
def test_tokenizing_in_pieces_gives_the_whole_text_answer(seed: int) -> None:
    rng = random.Random(seed)
    parts = ["Obama", " ", ".", " . ", ".  .", "<", ">", "http://t.co/x", "@user", "#tag", "😀", "\n", ":)", "...", "\t", "\r", "x" * 30]
    text = "".join(rng.choice(parts) for _ in range(2500))
    assert len(text) > 5 * tokenize_module.PIECE_CHARS
    whole = [(m.start(), m.end()) for m in tokenize_module._word_re().finditer(text)]
    assert [(t.start, t.end) for t in tokenize(text, "twitter2015")] == whole


def test_a_tokenizer_time_out_is_a_text_error(text_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stuck:
        def finditer(self, text: str) -> Iterator[Any]:
            raise TimeoutError("TweetTokenizer exceeded its 5.0s time limit")
            yield  # a generator, like NLTK's

    monkeypatch.setattr(tokenize_module, "_word_re", lambda: Stuck())
    with pytest.raises(TextError, match="post 0: the word tokenizer timed out"):
        Tagger.from_pretrained(text_ckpt).tag_many(["Obama in Paris"])


# -- 3. long posts --------------------------------------------------------------------------------
FILLER = "the a of in at to and is rt new york city".split()


def long_text(n: int, tail: str = "obama in paris") -> str:
    return " ".join(FILLER[i % len(FILLER)] for i in range(n)) + " " + tail


def test_a_long_post_is_read_in_overlapping_windows_and_every_word_is_tagged(text_ckpt: Path) -> None:
    tagger = Tagger.from_pretrained(text_ckpt)
    model = tagger.model
    post = tagger.tag(long_text(200))
    words = [t.text for t in post.tokens]
    assert post.windows > 1 and post.words_past_limit == 0
    assert post.emissions is not None and post.emissions.shape[0] == len(post.tokens) == len(post.tags)
    assert post.to_dict()["windows"] == post.windows and "words_not_read" not in post.to_dict()
    plan = model.plan_windows(words)
    assert plan[0][0] == 0 and plan[-1][1] == len(words) and len(plan) == post.windows
    # the last words come from the last window: the same numbers as tagging that window alone
    s, e = plan[-1]
    alone = model.run([words[s:e]])[0]
    assert torch.allclose(post.emissions[-3:], alone.emissions[-3:], atol=1e-5)
    # the first words from the first window
    s, e = plan[0]
    assert torch.allclose(post.emissions[:3], model.run([words[s:e]])[0].emissions[:3], atol=1e-5)


def test_windows_cover_the_post_within_the_budget_and_overlap(text_ckpt: Path) -> None:
    model = TextTagger.from_pretrained(text_ckpt)
    enc = model.word_encoder
    words = long_text(300).split() + ["supercalifragilisticexpialidocious" * 20] + long_text(50).split()
    plan = model.plan_windows(words)
    for (s0, e0), (s1, e1) in zip(plan, plan[1:], strict=False):
        assert s0 < s1 < e0 <= e1  # progress, and an overlap
    for s, e in plan:
        used = sum(len(enc.word_ids(w)) for w in words[s : e - 1])
        assert used + 1 <= enc.budget  # each word's first sub-token is in the input
    assert model.plan_windows(words[:5]) == [(0, 5)] and model.plan_windows([]) == [(0, 0)]


def test_a_post_that_fits_is_read_exactly_as_before(text_ckpt: Path) -> None:
    model = TextTagger.from_pretrained(text_ckpt).eval()
    words = long_text(40).split()
    assert len(model.plan_windows(words)) == 1
    enc = model.encode_post(words)
    assert all(f >= 0 for f in enc.first_sub)
    batch = model.collate([enc])
    expected = model.emissions(batch)[0]
    assert torch.allclose(model.run([words])[0].emissions, expected, atol=1e-6)


def test_truncation_says_how_many_words_were_not_read_and_does_not_tokenize_them(
    text_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagger = Tagger.from_pretrained(text_ckpt, long_posts="truncate")
    seen: list[str] = []
    original = tagger.model.word_encoder.word_ids

    def spy(word: str) -> list[int]:
        seen.append(word)
        return original(word)

    monkeypatch.setattr(tagger.model.word_encoder, "word_ids", spy)
    post = tagger.tag(long_text(200, tail="zzlastword"))
    assert post.windows == 1 and post.words_past_limit > 0
    assert post.to_dict()["words_not_read"] == post.words_past_limit
    assert post.tags[-post.words_past_limit :] == ["O"] * post.words_past_limit
    assert "zzlastword" not in seen  # words past the limit cost no sub-word tokenization
    assert post.emissions is not None and post.emissions.shape[0] == len(post.tokens) - post.words_past_limit


def test_a_long_multimodal_post_keeps_its_image_in_every_window(mm: dict[str, Any], drawn_images: list[Path]) -> None:
    """Each window is a post of its own with the same image and caption (the caption's segment has
    its own budget); r and the level weights reported are the first window's."""
    tagger = Tagger.from_pretrained(mm["ckpt"])
    text = long_text(80)
    post = tagger.tag(text, drawn_images[0], "a red square")
    assert post.windows > 1 and len(post.tags) == len(post.tokens)
    words = [t.text for t in post.tokens]
    s, e = tagger.model.plan_windows(words)[0]
    first = tagger.model.run([words[s:e]], [post.features])[0]
    assert first.relevance == pytest.approx(post.relevance, abs=1e-6)
    assert first.level_weights is not None and post.level_weights is not None
    assert all(first.level_weights[k] == pytest.approx(v, abs=1e-6) for k, v in post.level_weights.items())


def test_cli_tag_threads_and_image_workers(mm: dict[str, Any], drawn_images: list[Path], tmp_path: Path) -> None:
    from hamner.cli import main
    from hamner.vision import set_threads

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": i, "text": f"obama in paris {i}", "image": str(drawn_images[i % 6])}) + "\n" for i in range(8)))
    before = torch.get_num_threads()
    try:
        assert main(["tag", "--model", str(mm["ckpt"]), str(posts), "-o", str(tmp_path / "a.jsonl"), "--no-progress"]) == 0
        args = ["--threads", "1", "--image-workers", "2", "--no-progress"]
        assert main(["tag", "--model", str(mm["ckpt"]), str(posts), "-o", str(tmp_path / "b.jsonl"), *args]) == 0
        assert torch.get_num_threads() == 1
    finally:
        set_threads(before)  # torch's and OpenCV's: a process setting, for the tests after this one
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["entities"] for r in a] == [r["entities"] for r in b] and len(a) == 8
