"""HamLearning with a tiny random encoder and the fake extractor: shapes, masks, gradients per
branch, the no-visual-input identity, and the second-segment encoding."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import make_tiny_encoder
from fakes import scene
from hamner.data.labels import bio_labels
from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig
from hamner.models.hamlearning import TEXT_VIEW, HamLearningTagger, cross_view_kl
from hamner.models.tagger import TextTagger, _drop_pooler
from hamner.vision.config import VisionConfig
from hamner.vision.extractor import ImageFeatures, VisualExtractor

FAKE_VISION = VisionConfig(backbone="fakes:tiny_backbone", detector="fakes:ColourDetector")
FULL = {
    "use_global": True, "use_objects": True, "use_spatial": True, "use_semantic": True, "semantic_mode": "both",
    "num_iterations": 2, "num_heads": 4, "shape_dim": 8, "visual_channels": 8, "fusion_dropout": 0.0,
    "max_length": 32, "max_semantic_subtokens": 16, "dropout": 0.0,
}  # fmt: skip
#: parameter-name prefixes of each branch
BRANCHES = {
    "global": ("grid_proj.", "grid_row.", "grid_col.", "grid_norm.", "pools.global."),
    "objects": ("obj_proj.", "box_proj.", "obj_norm.", "obj_attn.qkv.", "obj_attn.out.", "obj_attn.ffn.", "pools.objects."),
    "spatial": ("obj_attn.direction.", "obj_attn.geometry."),
    "semantic_sequence": ("sem_proj.", "sem_norm.", "pools.semantic."),
    "relevance": ("relevance.", "rel_norm_t.", "rel_norm_v.", "rel_proj_t.", "rel_proj_v."),
    "fusion": ("t2v.", "gate.", "level_scorer.", "null_token", "text_pool."),
    "v2t": ("v2t.",),
}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = ("stop", "sign", "clock", "alpha", "beta", "gamma", "delta", "picture", "man", "red", "square")
    return make_tiny_encoder(tmp_path_factory.mktemp("enc"), words=words)


@pytest.fixture(scope="module")
def visuals() -> dict[str, ImageFeatures]:
    ex = VisualExtractor(FAKE_VISION)
    both = ex.extract(ex.load(_png(scene())), key="both", caption="a red square")
    red_only = ex.extract(ex.load(_png(scene(blue=None))), key="red", caption=None)
    caption_only = ex.without_image("caption", "missing", None, "a picture of a man", None)
    nothing = ex.without_image("nothing", "no_image", None, None, None)
    return {"both": both, "red": red_only, "caption": caption_only, "nothing": nothing}


def _png(img: Any) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build(encoder_dir: Path, seed: int = 0, **switches: Any) -> TextTagger:
    from transformers import AutoModel, AutoTokenizer

    cfg = TaggerConfig(encoder=str(encoder_dir), labels=bio_labels(), **{**FULL, **switches})
    torch.manual_seed(seed)
    encoder = _drop_pooler(AutoModel.from_pretrained(encoder_dir))
    return TextTagger.class_for(cfg)(cfg, encoder, AutoTokenizer.from_pretrained(encoder_dir))


POSTS = [["obama", "in", "paris", "today"], ["the", "nba", "game"], ["london", "police"], ["rt", "apple", "and", "google", "love"]]


def _batch(model: TextTagger, feats: list[ImageFeatures | None], tags: bool = False) -> dict[str, torch.Tensor]:
    enc = [model.encode_post(w, [1] + [0] * (len(w) - 1) if tags else None, f) for w, f in zip(POSTS, feats, strict=True)]
    return model.collate(enc)


def test_full_model_shapes_masks_and_what_it_returns(encoder_dir: Path, visuals: dict[str, ImageFeatures]) -> None:
    model = build(encoder_dir).eval()
    assert isinstance(model, HamLearningTagger)
    feats = [visuals["both"], visuals["red"], visuals["caption"], visuals["nothing"]]
    batch = _batch(model, feats)
    b, n = batch["word_mask"].shape
    # objects: 2 in the first image, 1 in the second, none for the posts without an image
    assert batch["object_mask"].sum(1).tolist() == [2, 1, 0, 0]
    assert batch["grid"].shape == (4, 8, 8, 8) and batch["grid_mask"].tolist() == [True, True, False, False]
    assert batch["geometry"].shape == (4, 2, 2, 5) and batch["direction"].shape == (4, 2, 2)
    out = model.fuse(batch)
    assert out["emissions"].shape == (b, n, len(model.config.labels))
    assert torch.isfinite(out["emissions"]).all()
    r, a = out["relevance"], out["level_weights"]
    assert r.shape == (4,) and ((r > 0) & (r < 1))[:3].all() and r[3] == 0  # no visual input: r = 0
    assert out["levels"] == ["global", "objects", "semantic"]
    # level weights: a distribution over the levels a post has, zero for the ones it lacks
    assert torch.allclose(a[:3].sum(1), torch.ones(3)) and a[3].sum() == 0
    assert a[2, 0] == 0 and a[2, 1] == 0 and a[2, 2] == 1  # caption only: the semantic level alone
    assert len(out["attention"]) == 2
    spans = out["visual_spans"]
    for att in out["attention"]:
        assert att.shape == (b, n, 1 + sum(spans.values()))
        assert torch.allclose(att.sum(-1), torch.ones(b, n), atol=1e-5)
        # padded visual positions get no attention: post 2 has no grid and no objects
        g, o = spans["global"], spans["objects"]
        assert att[2, :, 1 : 1 + g + o].abs().max() == 0
        assert att[1, :, 1 + g + 1 : 1 + g + o].abs().max() == 0  # the second object slot is padding for post 1


def _branch_grads(model: TextTagger) -> dict[str, float]:
    out: dict[str, float] = {}
    for branch, prefixes in BRANCHES.items():
        total, found = 0.0, False
        for name, p in model.named_parameters():
            if name.startswith(prefixes):
                found = True
                total += float(p.grad.abs().sum()) if p.grad is not None else 0.0
        if found:
            out[branch] = total
    return out


ABLATIONS = {
    "full": ({}, {"global", "objects", "spatial", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "no-global": ({"use_global": False}, {"objects", "spatial", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "no-objects": ({"use_objects": False, "use_spatial": False}, {"global", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "no-spatial": ({"use_spatial": False}, {"global", "objects", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "no-semantic": ({"use_semantic": False}, {"global", "objects", "spatial", "relevance", "fusion", "v2t"}),
    "no-relevance": ({"use_relevance": False}, {"global", "objects", "spatial", "semantic_sequence", "fusion", "v2t"}),
    "L1": ({"num_iterations": 1}, {"global", "objects", "spatial", "semantic_sequence", "relevance", "fusion"}),
    "L3": ({"num_iterations": 3}, {"global", "objects", "spatial", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "L0": ({"num_iterations": 0}, set()),
    "semantic-sequence": ({"semantic_mode": "sequence"}, {"global", "objects", "spatial", "semantic_sequence", "relevance", "fusion", "v2t"}),
    "semantic-segment": ({"semantic_mode": "segment"}, {"global", "objects", "spatial", "relevance", "fusion", "v2t"}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_gradients_reach_every_enabled_branch_and_no_disabled_one(
    name: str, encoder_dir: Path, visuals: dict[str, ImageFeatures]
) -> None:
    switches, enabled = ABLATIONS[name]
    model = build(encoder_dir, **switches).train()
    feats = [visuals["both"], visuals["red"], visuals["caption"], visuals["nothing"]]
    model._negatives = None
    batch = _batch(model, feats, tags=True)
    model(batch)  # fills the matching head's bank of negatives
    for key in ("grid", "objects", "geometry", "boxes"):
        if key in batch:
            batch[key] = batch[key].clone().requires_grad_(True)
    model.zero_grad()
    model(batch)["loss"].backward()
    grads = _branch_grads(model)
    assert set(grads) == enabled, f"{name}: branches built {sorted(grads)}, expected {sorted(enabled)}"
    for branch in enabled:
        assert grads[branch] > 0, f"{name}: no gradient reached {branch}"
    # the encoder always learns; the second segment's token type only when image words are a segment
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("encoder."))
    uses_pixels = bool(enabled & {"global", "objects"})
    for key, branch in (("grid", "global"), ("objects", "objects"), ("geometry", "spatial")):
        if key in batch:
            got = batch[key].grad is not None and float(batch[key].grad.abs().sum()) > 0
            assert got == (branch in enabled), f"{name}: gradient reached the {key} input: {got}"
    if not uses_pixels:
        assert "grid" not in batch or batch["grid"].grad is None


def test_char_channel_widens_the_fused_words_and_learns(encoder_dir: Path, visuals: dict[str, ImageFeatures]) -> None:
    model = build(encoder_dir, use_chars=True, char_filters=8).train()
    assert isinstance(model, HamLearningTagger) and model.width == 32 + 8 + 8  # encoder + shape + chars
    batch = _batch(model, [visuals["both"], visuals["red"], visuals["caption"], visuals["nothing"]], tags=True)
    assert batch["char_ids"].shape[:2] == batch["word_mask"].shape
    model(batch)["loss"].backward()
    assert model.char_cnn is not None and float(model.char_cnn.conv.weight.grad.abs().sum()) > 0
    assert all(v > 0 for v in _branch_grads(model).values())


@pytest.mark.parametrize(
    "channels",
    [{}, {"use_chars": True, "char_filters": 8}, {"use_entity_types": True, "entity_type_dim": 8}],
    ids=["shape", "shape+chars", "shape+entity-types"],
)
def test_no_visual_input_gives_exactly_the_text_path(
    encoder_dir: Path, visuals: dict[str, ImageFeatures], channels: dict[str, Any], fake_spacy: Any
) -> None:
    ham = build(encoder_dir, **channels).eval()
    assert (ham.encode_post(POSTS[0], None, visuals["both"]).entity_ids is not None) == ("use_entity_types" in channels)
    text_cfg = replace(
        ham.config, use_global=False, use_objects=False, use_spatial=False, use_semantic=False
    )
    text = TextTagger(text_cfg, copy.deepcopy(ham.encoder), ham.tokenizer).eval()
    missing, unexpected = text.load_state_dict(ham.state_dict(), strict=False)
    assert not missing and unexpected  # the text path's weights are the HamLearning model's own
    words = POSTS[0]
    with torch.no_grad():
        ref = text.emissions(text.collate([text.encode_post(words)]))
        for feats in (None, visuals["nothing"]):
            got = ham.fuse(ham.collate([ham.encode_post(words, None, feats)]))
            assert torch.equal(got["emissions"], ref)
            assert got["relevance"] is not None and float(got["relevance"][0]) == 0.0
        # in a batch beside posts with images, the same post's emissions are unchanged (up to padding arithmetic)
        batch = ham.collate([ham.encode_post(w, None, f) for w, f in zip(POSTS[:2], [None, visuals["both"]], strict=True)])
        mixed = ham.fuse(batch)["emissions"][0, : len(words)]
        assert torch.allclose(mixed, ref[0], atol=1e-5)
        # and an image does change them
        with_image = ham.fuse(ham.collate([ham.encode_post(words, None, visuals["both"])]))["emissions"]
        assert not torch.allclose(with_image, ref, atol=1e-4)


def test_second_segment_encoding(encoder_dir: Path, visuals: dict[str, ImageFeatures]) -> None:
    model = build(encoder_dir, semantic_mode="segment")
    tok = model.tokenizer
    words = ["obama", "in", "paris"]
    plain = model.word_encoder.encode(words)
    post = model.encode_post(words, None, visuals["caption"])
    sem = visuals["caption"].semantic.words
    assert tok.convert_ids_to_tokens(post.input_ids) == (
        ["[CLS]", "obama", "in", "paris", "[SEP]"] + tok.convert_ids_to_tokens(model.word_encoder.subtokens(sem, 99)) + ["[SEP]"]
    )
    assert post.first_sub == plain.first_sub  # the post's words keep their positions
    assert post.token_type_ids is not None
    assert post.token_type_ids[:5] == [0] * 5 and set(post.token_type_ids[5:]) == {1}
    assert post.sem_positions is None  # segment mode: the image words are not a fused sequence
    # no image words: exactly the one-segment input
    assert model.encode_post(words, None, visuals["nothing"]).input_ids == plain.input_ids
    assert model.encode_post(words, None, None).token_type_ids is None
    # the image words' budget: the encoder's positions minus the post's maximum
    assert model.semantic_budget == min(16, 64 - 32 - 1)
    long = model.encode_post(words, None, replace(visuals["caption"], semantic=type(visuals["caption"].semantic)(["man"] * 40, ["caption"] * 40)))
    assert len(long.input_ids) == len(plain.input_ids) + model.semantic_budget + 1


def test_sequence_mode_encodes_image_words_on_their_own(encoder_dir: Path, visuals: dict[str, ImageFeatures]) -> None:
    model = build(encoder_dir, semantic_mode="sequence")
    words = ["obama", "in", "paris"]
    post = model.encode_post(words, None, visuals["caption"])
    assert post.input_ids == model.word_encoder.encode(words).input_ids
    assert post.sem_input_ids is not None and post.sem_positions is not None
    toks = model.tokenizer.convert_ids_to_tokens(post.sem_input_ids)
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert [toks[i] for i in post.sem_positions] == toks[1:-1]


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        ({"use_spatial": True, "use_objects": False}, "use_spatial needs model.use_objects"),
        ({"semantic_mode": "both-ways"}, "semantic_mode must be"),
        ({"num_iterations": -1}, "num_iterations"),
        ({"relevance_loss_weight": -0.1}, "relevance_loss_weight"),
        ({"cross_view_weight": -1.0}, "cross_view_weight must be >= 0"),
        ({"cross_view_weight": 1.0, "use_global": False, "use_objects": False, "use_spatial": False,
          "use_semantic": False}, "cross_view_weight needs a multimodal model"),
    ],
)
def test_bad_switches_are_refused(switches: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TaggerConfig(**{**FULL, **switches})


def test_heads_must_divide_the_width(encoder_dir: Path) -> None:
    with pytest.raises(ConfigError, match="num_heads=3 does not divide the model width 40"):
        build(encoder_dir, num_heads=3)


def test_wrong_channel_count_is_a_clear_error(encoder_dir: Path, visuals: dict[str, ImageFeatures]) -> None:
    model = build(encoder_dir, visual_channels=16)
    with pytest.raises(ConfigError, match="has 8 channels; the model expects model.visual_channels=16"):
        model.collate([model.encode_post(["obama"], None, visuals["both"])])


def test_checkpoint_round_trip_keeps_the_class_and_the_outputs(
    tmp_path: Path, encoder_dir: Path, visuals: dict[str, ImageFeatures]
) -> None:
    model = build(encoder_dir).eval()
    model.save_pretrained(tmp_path / "ckpt")
    again = TextTagger.from_pretrained(tmp_path / "ckpt").eval()
    assert isinstance(again, HamLearningTagger) and again.config == model.config
    batch = _batch(model, [visuals["both"], visuals["red"], visuals["caption"], visuals["nothing"]])
    with torch.no_grad():
        assert torch.equal(model.fuse(batch)["emissions"], again.fuse(batch)["emissions"])


def _two_views(model: TextTagger, feats: list[ImageFeatures | None]) -> dict[str, torch.Tensor]:
    tags = [[1] + [0] * (len(w) - 1) for w in POSTS]
    batch = model.collate([model.encode_post(w, t, f) for w, t, f in zip(POSTS, tags, feats, strict=True)])
    text = model.collate([model.encode_post(w, t, None) for w, t in zip(POSTS, tags, strict=True)])
    batch.update({TEXT_VIEW + k: v for k, v in text.items()})
    return batch


def test_cross_view_alignment_adds_the_text_views_crf_loss_and_the_kl(
    encoder_dir: Path, visuals: dict[str, ImageFeatures]
) -> None:
    model = build(encoder_dir, cross_view_weight=2.0).eval()  # eval: the encoder's dropout off, to compare
    feats = [visuals["both"], visuals["red"], visuals["caption"], visuals["nothing"]]
    batch = _two_views(model, feats)
    out = model(batch)
    plain = model({k: v for k, v in batch.items() if not k.startswith(TEXT_VIEW)})
    assert {"text_tag_loss", "cross_view_loss"} <= set(out) and "cross_view_loss" not in plain
    assert float(out["cross_view_loss"].detach()) > 0  # three posts have a visual input: the views disagree
    assert torch.allclose(out["tag_loss"], plain["tag_loss"])
    assert torch.allclose(out["loss"], out["tag_loss"] + out["text_tag_loss"] + 2.0 * out["cross_view_loss"])
    # the text-view loss is the text path's CRF loss on the text-only encodings
    text = {k[len(TEXT_VIEW) :]: v for k, v in batch.items() if k.startswith(TEXT_VIEW)}
    ref = model.crf.nll(model.fuse(text)["emissions"], text["tags"], text["word_mask"])
    assert torch.allclose(out["text_tag_loss"], ref)


def test_cross_view_kl_is_zero_for_identical_views_and_the_teacher_gets_no_gradient(encoder_dir: Path) -> None:
    model = build(encoder_dir)
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, len(model.config.labels), requires_grad=True)
    student = torch.randn(2, 4, len(model.config.labels), requires_grad=True)  # the text view has fewer words
    t_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    s_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    same = cross_view_kl(model.crf, teacher, t_mask, teacher, t_mask).detach()
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    kl = cross_view_kl(model.crf, teacher, t_mask, student, s_mask)
    assert float(kl.detach()) > 0
    kl.backward()
    assert teacher.grad is None
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert float(student.grad[1, 2:].abs().sum()) == 0  # padding gets nothing
    # the student side trains the CRF's transitions; the teacher's marginals are constants
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.crf.parameters())


@pytest.mark.parametrize("mode", ["both", "segment", "sequence"])
def test_image_word_masking_touches_only_image_word_subtokens(
    encoder_dir: Path, visuals: dict[str, ImageFeatures], mode: str
) -> None:
    from hamner.training.trainer import mask_image_words

    model = build(encoder_dir, semantic_mode=mode)
    mask = model.tokenizer.mask_token_id
    long_caption = type(visuals["caption"].semantic)(["man", "picture", "red", "square"] * 4, ["caption"] * 16)
    post = model.encode_post(["obama", "in", "paris"], [1, 0, 2], replace(visuals["caption"], semantic=long_caption))
    field = "sem_input_ids" if mode == "sequence" else "input_ids"
    where = post.sem_positions if mode == "sequence" else post.segment_positions
    assert where and mask not in getattr(post, field)
    assert mask_image_words(post, 1, 0, 7, 0.0, mask) is post  # off: the very same post

    masked = [mask_image_words(post, 1, 0, 7, 0.5, mask) for _ in range(2)]
    assert masked[0] == masked[1]  # a fixed draw per (seed, epoch, post): a resumed run masks the same
    before, after = getattr(post, field), getattr(masked[0], field)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed and set(changed) <= set(where)  # only image-word sub-tokens, never the post or [CLS]/[SEP]
    assert all(after[i] == mask for i in changed)
    assert 0 < len(changed) < len(where)
    # everything else is untouched, and the original post is not modified in place
    other = "input_ids" if field == "sem_input_ids" else "sem_input_ids"
    assert getattr(masked[0], other) == getattr(post, other)
    assert (masked[0].first_sub, masked[0].tag_ids, masked[0].token_type_ids) == (post.first_sub, post.tag_ids, post.token_type_ids)
    assert mask not in getattr(post, field)
    # drawn afresh every epoch and per post; the rate is about p
    assert getattr(mask_image_words(post, 1, 1, 7, 0.5, mask), field) != after or getattr(
        mask_image_words(post, 1, 2, 7, 0.5, mask), field
    ) != after
    hits = sum(getattr(mask_image_words(post, 1, e, 7, 0.2, mask), field).count(mask) for e in range(200))
    assert 0.15 < hits / (200 * len(where)) < 0.25
    # a post without image words is returned as it is
    bare = model.encode_post(["obama"], [1], visuals["nothing"])
    assert mask_image_words(bare, 1, 0, 0, 0.9, mask) is bare
