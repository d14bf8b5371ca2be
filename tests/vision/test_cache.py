"""The feature cache: round trip, one path for cache and on-the-fly, staleness, resume, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import scene
from hamner.cli import main
from hamner.errors import CacheError, ImageError
from hamner.vision.cache import FeatureStore, ImageEntry, folder_entries, preprocess
from hamner.vision.config import VisionConfig
from hamner.vision.extractor import VisualExtractor

FAKE = {"backbone": "fakes:tiny_backbone", "detector": "fakes:ColourDetector"}


def make(**settings: object) -> VisualExtractor:
    return VisualExtractor(VisionConfig(**{**FAKE, "on_bad_image": "skip", **settings}))  # type: ignore[arg-type]


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Five good images (one PNG named .jpg), one unreadable and one truncated file."""
    d = tmp_path / "images"
    d.mkdir()
    for i in range(5):
        img = scene(red=(5 + 3 * i, 5, 40 + 3 * i, 30), blue=None if i == 2 else (60, 40, 100, 80))
        img.save(d / f"p{i}.jpg", format="PNG" if i == 4 else "JPEG", quality=95)
    (d / "broken.jpg").write_bytes(b"<html>404</html>")
    full = (d / "p0.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(full[: len(full) // 2])
    return d


def entries_for(image_dir: Path) -> list[ImageEntry]:
    entries = folder_entries(image_dir, captions={"p0": "a red sign", "ghost": "never seen"})
    return [*entries, ImageEntry("ghost", None, caption="never seen")]  # a post whose image is missing


def test_round_trip_and_same_tensors_as_on_the_fly(image_dir: Path, tmp_path: Path) -> None:
    ex = make()
    entries = entries_for(image_dir)
    manifest = preprocess(entries, tmp_path / "cache", ex, shard_size=3, progress=False)
    store = FeatureStore.open(tmp_path / "cache", expect=ex)
    assert len(store) == len(entries) == 8 and "p3" in store
    fresh = make()  # a new extractor, as `hamner tag` would build
    for e in entries:
        if e.path is None:
            continue  # "ghost": no file at all (checked below)
        cached = store[e.key]
        direct = fresh.extract_file(e.path, key=e.key, caption=e.caption)
        assert cached.same_as(direct), e.key
    assert store["p0"].semantic.from_source("caption") == ["a", "red", "sign"]
    assert store["ghost"].status == "missing" and store["ghost"].semantic.words == ["never", "seen"]
    assert manifest["counts"] == {
        "entries": 8, "images_found": 5, "missing": 1, "unreadable": 1, "truncated": 1, "too_large": 0, "no_image": 0,
    }
    assert manifest["objects_per_image"]["histogram"] == {"1": 1, "2": 4}
    assert manifest["semantic_words"]["posts_with_source"]["caption"] == 2
    assert manifest["fingerprint"] == ex.fingerprint
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text()) == manifest
    assert [p.name for p in sorted((tmp_path / "cache").glob("shard-*.safetensors"))] == [
        "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors",
    ]
    with pytest.raises(KeyError, match="'nope' is not in the feature cache"):
        store["nope"]


def test_stale_fingerprint_is_detected_and_explained(image_dir: Path, tmp_path: Path) -> None:
    entries = entries_for(image_dir)
    preprocess(entries, tmp_path / "cache", make(), progress=False)
    other = make(score_threshold=0.95)
    with pytest.raises(CacheError, match=r"stale feature cache.*settings.score_threshold: cache 0.4, now 0.95"):
        FeatureStore.open(tmp_path / "cache", expect=other)
    with pytest.raises(CacheError, match=r"other settings.*settings.score_threshold.*--overwrite"):
        preprocess(entries, tmp_path / "cache", other, progress=False)
    manifest = preprocess(entries, tmp_path / "cache", other, overwrite=True, progress=False)
    assert manifest["objects_per_image"]["mean"] == 0.0
    assert FeatureStore.open(tmp_path / "cache", expect=other).fingerprint == other.fingerprint
    with pytest.raises(CacheError, match="other inputs"):
        preprocess(entries[:3], tmp_path / "cache", other, progress=False)


def test_resume_does_not_redo_finished_images(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = entries_for(image_dir)
    ex = make()
    assert preprocess(entries, tmp_path / "cache", ex, shard_size=3, stop_after=1, progress=False) == {}
    with pytest.raises(CacheError, match="incomplete"):
        FeatureStore.open(tmp_path / "cache")
    seen: list[str] = []
    original = VisualExtractor.extract

    def counting(self, loaded, *, key, caption=None, ocr=None):  # type: ignore[no-untyped-def]
        seen.append(key)
        return original(self, loaded, key=key, caption=caption, ocr=ocr)

    monkeypatch.setattr(VisualExtractor, "extract", counting)
    manifest = preprocess(entries, tmp_path / "cache", ex, shard_size=3, progress=False)
    first_shard = {e.key for e in entries[:3]}
    assert seen and not (set(seen) & first_shard)
    assert manifest["counts"]["images_found"] == 5
    monkeypatch.setattr(VisualExtractor, "extract", original)
    uninterrupted = tmp_path / "again"
    preprocess(entries, uninterrupted, make(), shard_size=3, progress=False)
    a, b = FeatureStore.open(tmp_path / "cache"), FeatureStore.open(uninterrupted)
    assert all(a[k].same_as(b[k]) for k in a.keys())


def test_overwrite_of_an_interrupted_cache(image_dir: Path, tmp_path: Path) -> None:
    entries = entries_for(image_dir)
    preprocess(entries, tmp_path / "cache", make(), shard_size=3, stop_after=1, progress=False)
    other = make(score_threshold=0.95)
    with pytest.raises(CacheError, match="--overwrite"):
        preprocess(entries, tmp_path / "cache", other, progress=False)
    manifest = preprocess(entries, tmp_path / "cache", other, overwrite=True, progress=False)
    assert manifest["counts"]["images_found"] == 5 and FeatureStore.open(tmp_path / "cache", expect=other)


def test_out_must_be_a_directory(image_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="is not a directory"):
        preprocess(entries_for(image_dir), tmp_path / "file", make(), progress=False)


def test_error_policy_stops_at_the_first_bad_image(image_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="broken.jpg: unreadable"):
        preprocess(entries_for(image_dir), tmp_path / "cache", make(on_bad_image="error"), progress=False)


def test_open_rejects_a_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="not a feature cache"):
        FeatureStore.open(tmp_path)


def test_cli_preprocess_a_folder(image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captions = tmp_path / "captions.txt"
    captions.write_text("p1.jpg :two signs\np2.jpg :one sign\n")
    out = tmp_path / "feats"
    args = ["preprocess", "--images", str(image_dir), "--captions", str(captions), "--out", str(out), "--no-progress",
            "--set", "backbone=fakes:tiny_backbone", "--set", "detector=fakes:ColourDetector"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["images_found"] == 5 and printed["counts"]["unreadable"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"].startswith("hamner preprocess --images")
    assert manifest["inputs"]["captions"]["sha256"]
    assert FeatureStore.open(out)["p1"].semantic.from_source("caption") == ["two", "signs"]
    # the same command again finds everything done; another threshold is refused with the reason
    assert main(args) == 0
    assert main([*args, "--set", "score_threshold=0.7"]) == 2
    assert "settings.score_threshold" in capsys.readouterr().err
    # --on-bad-image error stops with the file named; so does on_bad_image: error in a config file
    assert main([*args, "--out", str(tmp_path / "strict"), "--on-bad-image", "error"]) == 2
    assert "broken.jpg: unreadable image" in capsys.readouterr().err
    strict = tmp_path / "strict.yaml"
    strict.write_text("on_bad_image: error\n")
    assert main([*args, "--out", str(tmp_path / "strict2"), "--config", str(strict)]) == 2
    assert "broken.jpg: unreadable image" in capsys.readouterr().err
    # bad numbers are usage errors, not tracebacks
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--threads", "0"])
    assert exit_info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_caption_file_with_bom_or_bad_bytes(tmp_path: Path) -> None:
    from hamner.data.conll import read_captions
    from hamner.errors import DataFormatError

    good = tmp_path / "bom.txt"
    good.write_bytes("\ufeffp1.jpg :a dog\n".encode())
    assert read_captions(good) == {"p1": "a dog"}
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("p1.jpg :caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="latin1.txt: not UTF-8"):
        read_captions(bad)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_extract_the_same_features_in_the_same_order(image_dir: Path, tmp_path: Path, workers: int) -> None:
    entries = entries_for(image_dir)
    one = preprocess(entries, tmp_path / "one", make(), shard_size=3, progress=False)
    many = preprocess(entries, tmp_path / "many", make(), shard_size=3, progress=False, workers=workers)
    assert many["counts"] == one["counts"] and many["fingerprint"] == one["fingerprint"]
    a, b = FeatureStore.open(tmp_path / "one"), FeatureStore.open(tmp_path / "many")
    for name in ("one", "many"):  # every shard holds the entries in their input order
        keys = [r["key"] for p in sorted((tmp_path / name).glob("shard-*.json")) for r in json.loads(p.read_text())["records"]]
        assert keys == [e.key for e in entries]
    for e in entries:
        assert a[e.key].same_as(b[e.key]), e.key


def test_workers_stop_at_the_first_bad_image_in_input_order(image_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="broken.jpg: unreadable"):
        preprocess(entries_for(image_dir), tmp_path / "cache", make(on_bad_image="error"), progress=False, workers=3)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        preprocess(entries_for(image_dir), tmp_path / "c2", make(), progress=False, workers=0)


def test_content_keys_follow_the_image_bytes_and_the_caption_not_the_file_name(tmp_path: Path) -> None:
    from hamner.vision.cache import content_key

    scene().save(tmp_path / "a.png")
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    scene(red=None).save(tmp_path / "b.png")
    a = content_key(tmp_path / "a.png", None)
    assert a.startswith("img-") and a == content_key(tmp_path / "copy.png", None)
    assert a != content_key(tmp_path / "b.png", None)
    assert content_key(tmp_path / "a.png", "a red sign") not in (a, content_key(tmp_path / "a.png", "a blue sign"))
    assert content_key(None, None) == "noimg" and content_key(None, "x").startswith("noimg-txt-")
    assert content_key(tmp_path / "gone.png", None).startswith("lost-")


def corpus_with_pictures(folder: Path) -> Path:
    folder.mkdir(parents=True)
    scene().save(folder / "a.png")
    posts = [
        {"id": "1", "text": "obama in paris", "entities": [{"start": 0, "end": 5, "type": "PER"}], "image": "a.png"},
        {"id": "2", "text": "the nba game", "entities": [{"start": 4, "end": 7, "type": "ORG"}], "caption": "a game"},
        {"id": "3", "text": "the nba again", "entities": [{"start": 4, "end": 7, "type": "ORG"}]},
        {"id": "4", "text": "obama again", "entities": [{"start": 0, "end": 5, "type": "PER"}], "image": "gone.png"},
    ]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in posts))
    return folder


def test_a_corpus_cache_is_keyed_by_content_and_refuses_an_edited_image(tmp_path: Path) -> None:
    from hamner.data.corpus import corpus_spec, load_posts
    from hamner.errors import ConfigError
    from hamner.training.trainer import visual_inputs
    from hamner.vision.cache import KEY_SCHEME_CONTENT, corpus_entries

    corpus = corpus_with_pictures(tmp_path / "mine")
    spec = corpus_spec(None, corpus)
    entries, facts = corpus_entries(spec)
    assert len(entries) == 4  # the three splits' identical posts share their entries
    assert facts["posts"] == {"train": 4, "dev": 4, "test": 4} and facts["image_not_found"] == 3
    manifest = preprocess(entries, tmp_path / "cache", make(), progress=False, key_scheme=KEY_SCHEME_CONTENT)
    assert manifest["key_scheme"] == KEY_SCHEME_CONTENT
    counts = manifest["counts"]
    assert (counts["images_found"], counts["no_image"], counts["missing"]) == (1, 2, 1)
    store = FeatureStore.open(tmp_path / "cache")
    assert store.key_scheme == KEY_SCHEME_CONTENT
    posts = load_posts(spec, "test")
    feats = visual_inputs(posts, store, spec.file("test"))
    assert feats is not None
    assert [f.status for f in feats] == ["ok", "no_image", "no_image", "missing"]
    assert feats[1].semantic.words == ["a", "game"] and feats[2].semantic.words == []
    scene(red=None).save(corpus / "a.png")  # the picture is replaced after preprocessing
    with pytest.raises(ConfigError, match=r"test.jsonl:1: post 1: its image and caption \(key img-.*changed since"):
        visual_inputs(posts, store, spec.file("test"))


def test_a_folder_cache_keeps_its_imgid_keys_and_header(image_dir: Path, tmp_path: Path) -> None:
    preprocess(entries_for(image_dir), tmp_path / "cache", make(), progress=False)
    header = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert "key_scheme" not in header  # the benchmarks' caches are unchanged (no new field)
    assert FeatureStore.open(tmp_path / "cache").key_scheme == "imgid"
